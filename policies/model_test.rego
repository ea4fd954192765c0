package parachute.model_test

import data.parachute.fixtures
import data.parachute.model

decide(x) := d if {
	d := model.decision with input as x with data.parachute.config as fixtures.config
}

call(session, name, used, requested) := {
	"session": session,
	"provider": "openai",
	"model": name,
	"tokens_used_today": used,
	"tokens_requested": requested,
}

test_member_model_allowed_with_budget if {
	d := decide(call(fixtures.member_session, "gpt-x", 1000, 500))
	d.allow
	d.tokens_remaining == 199000
	d.rate_limits == [{"key": "model:discord:111222333444555666", "rate": 0.5, "burst": 10}]
}

test_model_not_in_role_list if {
	s := object.union(fixtures.member_session, {"role": "reviewer"})
	d := decide(call(s, "big-model", 0, 0))
	d.reasons == ["model-not-allowed"]
	contains(d.reply, "big-model")
	decide(call(s, "small-model", 0, 0)).allow
}

test_budget_exhausted if {
	d := decide(call(fixtures.member_session, "m", 200000, 0))
	d.reasons == ["token-budget-exhausted"]
	contains(d.reply, "budget")
}

test_request_over_budget if {
	decide(call(fixtures.member_session, "m", 199000, 2000)).reasons == ["token-budget-exhausted"]
	decide(call(fixtures.member_session, "m", 199000, 1000)).allow
}

test_guest_budget_is_small if {
	s := object.union(fixtures.member_session, {"role": "guest"})
	decide(call(s, "m", 20000, 0)).reasons == ["token-budget-exhausted"]
}

test_requested_defaults_to_zero if {
	decide(object.remove(call(fixtures.member_session, "m", 0, 0), ["tokens_requested"])).allow
}

# A usage that is not a number ("lots") is not tested here: the budget rules
# add it, a builtin error under strict builtin errors, the mode the engine and
# `parachute policy test` evaluate in (a policy-error deny). usage_ok keeps a
# non-strict evaluator from allowing it.
test_missing_or_bad_fields_denied if {
	"invalid-model" in decide(object.remove(call(fixtures.member_session, "m", 0, 0), ["model"])).reasons
	"invalid-model" in decide(call(fixtures.member_session, "", 0, 0)).reasons
	not decide({}).allow
}

with_extras(x, extras) := object.union(x, extras)

no_network := object.union(fixtures.member_session, {"network": false})

with_network := object.union(fixtures.member_session, {"network": true})

test_provider_tools_refused_without_network if {
	# A session without network gets no provider-side tool, MCP connector
	# server or network beta, whatever the role lists.
	s := object.union(no_network, {"role": "owner"})
	d := decide(with_extras(call(s, "m", 0, 0), {"provider_tools": ["web_fetch_20250910"]}))
	not d.allow
	"provider-tool-needs-network" in d.reasons
	contains(d.reply, "web_fetch_20250910")
	m := decide(with_extras(call(s, "m", 0, 0), {"mcp_servers": ["https://mcp.example.org/sse"]}))
	"provider-tool-needs-network" in m.reasons
	b := decide(with_extras(call(s, "m", 0, 0), {"betas": ["mcp-client-2025-04-04"]}))
	b.reasons == ["model-beta-needs-network", "model-beta-not-allowed"]
}

test_provider_tools_need_the_role if {
	base := call(with_network, "m", 0, 0)
	d := decide(with_extras(base, {"provider_tools": ["web_search_20250305"]}))
	d.reasons == ["provider-tool-not-allowed"]
	cfg := fixtures.prepare(object.union(fixtures.operator, {"roles": {"member": {"provider_tools": ["web_search_*", "mcp_servers"], "model_betas": ["mcp-client-*"]}}}))
	ok := model.decision with input as with_extras(base, {
		"provider_tools": ["web_search_20250305"],
		"mcp_servers": ["https://mcp.example.org/sse"],
		"betas": ["mcp-client-2025-04-04"],
	})
		with data.parachute.config as cfg
	ok.allow
	no := model.decision with input as with_extras(base, {"provider_tools": ["code_execution_20250825"]})
		with data.parachute.config as cfg
	no.reasons == ["provider-tool-not-allowed"]
}

test_harmless_betas_allowed_unknown_refused if {
	base := call(no_network, "m", 0, 0)
	decide(with_extras(base, {"betas": ["prompt-caching-2024-07-31", "interleaved-thinking-2025-05-14"]})).allow
	decide(with_extras(base, {"betas": ["brand-new-thing-2030-01-01"]})).reasons == ["model-beta-not-allowed"]
}

test_bad_provider_tool_fields_denied if {
	"invalid-provider-tools" in decide(with_extras(call(with_network, "m", 0, 0), {"provider_tools": "web_fetch"})).reasons
	"invalid-provider-tools" in decide(with_extras(call(with_network, "m", 0, 0), {"betas": {"a": 1}})).reasons
}

test_non_string_tool_names_denied if {
	"invalid-provider-tools" in decide(with_extras(call(no_network, "m", 0, 0), {"betas": [1]})).reasons
}
