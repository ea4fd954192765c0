# parachute.model decides one model call: is the model allowed for the role,
# is there budget left today for the call's worst case, and may the provider
# run tools or beta features for it. See policies/README.md.
package parachute.model

import data.parachute.lib

settings := lib.role_settings(input.session.role)

budget := settings.tokens_per_day

used := input.tokens_used_today

requested := object.get(input, "tokens_requested", 0)

# What the provider itself would run for this call: server-side tools
# (web search and fetch, code execution, computer use), Anthropic MCP
# connector servers, and anthropic-beta features. Each reaches the network
# from the provider's side, around egress policy, so none is given to a
# session without network, and with network only what the role lists.
provider_tools := strings_of("provider_tools")

mcp_servers := strings_of("mcp_servers")

betas := strings_of("betas")

# strings_of is the input list named, or [] when it is missing or not a
# list of strings (then extras_ok fails and the call is denied).
strings_of(name) := l if {
	l := object.get(input, name, [])
	is_array(l)
	every v in l {
		is_string(v)
	}
} else := []

tool_patterns := object.get(settings, "provider_tools", [])

beta_patterns := object.get(settings, "model_betas", default_betas)

# Betas that change only how the model answers; every role may send them.
default_betas := [
	"prompt-caching-*",
	"interleaved-thinking-*",
	"fine-grained-tool-streaming-*",
	"token-efficient-tools-*",
	"output-128k-*",
	"context-1m-*",
	"extended-cache-ttl-*",
	# Claude Code's own (docs/agent.md): its prompt format and the effort
	# setting; both shape the answer only.
	"claude-code-*",
	"effort-*",
]

# Betas that let the provider reach the network or files on its side.
network_beta_prefixes := [
	"mcp-client-",
	"web-fetch-",
	"web-search-",
	"code-execution-",
	"computer-use-",
	"files-api-",
]

# matches: name is one of patterns, or starts with a pattern's text
# before its trailing "*".
matches(name, patterns) if name in patterns

matches(name, patterns) if {
	some p in patterns
	endswith(p, "*")
	startswith(name, trim_suffix(p, "*"))
}

network_beta(b) if {
	some p in network_beta_prefixes
	startswith(b, p)
}

provider_side contains t if some t in provider_tools

provider_side contains "mcp_servers" if count(mcp_servers) > 0

extras_ok if {
	every name in ["provider_tools", "mcp_servers", "betas"] {
		l := object.get(input, name, [])
		is_array(l)
		every v in l {
			is_string(v)
		}
	}
}

model_allowed if "*" in settings.models

model_allowed if input.model in settings.models

# Negations only ever negate a rule: "not f(x)" is not true when x is
# undefined, and a missing field must deny.
model_ok if {
	is_string(input.model)
	input.model != ""
}

usage_ok if {
	is_number(used)
	is_number(requested)
}

deny contains "invalid-model" if not model_ok

deny contains "model-not-allowed" if {
	model_ok
	not model_allowed
}

deny contains "invalid-usage" if not usage_ok

deny contains "invalid-provider-tools" if not extras_ok

deny contains "provider-tool-needs-network" if {
	count(provider_side) > 0
	not input.session.network
}

deny contains "provider-tool-not-allowed" if {
	some t in provider_side
	not matches(t, tool_patterns)
}

deny contains "model-beta-needs-network" if {
	some b in betas
	network_beta(b)
	not input.session.network
}

deny contains "model-beta-not-allowed" if {
	some b in betas
	not matches(b, beta_patterns)
}

deny contains "token-budget-exhausted" if used >= budget

deny contains "token-budget-exhausted" if used + requested > budget

tokens_remaining := max([budget - used, 0])

reply := "Your daily model budget is used up. It resets at midnight UTC." if {
	"token-budget-exhausted" in deny
} else := sprintf("The model %q is not available to you.", [input.model]) if {
	"model-not-allowed" in deny
} else := sprintf("The provider may not run %s for this session: it reaches the network around egress policy.", [concat(", ", sort(array.concat([t | some t in provider_side], betas)))]) if {
	some r in deny
	r in {"provider-tool-needs-network", "provider-tool-not-allowed", "model-beta-needs-network", "model-beta-not-allowed"}
} else := ""

rate_limits := [{
	"key": concat(":", ["model", input.session.identity]),
	"rate": settings.model_call_rate,
	"burst": settings.model_call_burst,
}]

decision := {"allow": false, "reasons": sort(deny), "reply": reply} if {
	count(deny) > 0
} else := {
	"allow": true,
	"reasons": [],
	"tokens_remaining": tokens_remaining,
	"rate_limits": rate_limits,
}
