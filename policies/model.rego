# parachute.model decides one model call: is the model allowed for the role,
# and is there budget left today. See policies/README.md.
package parachute.model

import data.parachute.lib

s := input.session

settings := lib.role_settings(s.role)

budget := settings.tokens_per_day

used := input.tokens_used_today

requested := object.get(input, "tokens_requested", 0)

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

deny contains "token-budget-exhausted" if used >= budget

deny contains "token-budget-exhausted" if used + requested > budget

tokens_remaining := max([budget - used, 0])

reply := "Your daily model budget is used up. It resets at midnight UTC." if {
	"token-budget-exhausted" in deny
} else := sprintf("The model %q is not available to you.", [input.model]) if {
	"model-not-allowed" in deny
} else := ""

rate_limits := [{
	"key": concat(":", ["model", s.identity]),
	"rate": lib.per_second(settings.model_calls_per_minute),
	"burst": settings.model_call_burst,
}]

decision := {"allow": false, "reasons": sort(deny), "reply": reply} if count(deny) > 0

decision := {
	"allow": true,
	"reasons": [],
	"tokens_remaining": tokens_remaining,
	"rate_limits": rate_limits,
} if {
	count(deny) == 0
}
