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

test_missing_or_bad_fields_denied if {
	"invalid-model" in decide(object.remove(call(fixtures.member_session, "m", 0, 0), ["model"])).reasons
	"invalid-model" in decide(call(fixtures.member_session, "", 0, 0)).reasons
	"invalid-usage" in decide(call(fixtures.member_session, "m", "lots", 0)).reasons
	"invalid-usage" in decide(call(fixtures.member_session, "m", 0, "lots")).reasons
	not decide({}).allow
}
