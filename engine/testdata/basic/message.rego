# A small policy that exercises each way a decision can come out. It is not
# the product policy (that is policies/); engine tests use it to check the
# engine's own behaviour.
package parachute.message

decision := {
	"allow": true,
	"reasons": [],
	"role": "member",
	"trust_level": "sandboxed",
	"workspace": concat("/", ["users", urlquery.encode(input.sender.id)]),
	"greeting": greeting,
	"rate_limits": [{"key": concat(":", ["message", input.sender.id]), "rate": 0, "burst": 2}],
} if input.command == "allow"

decision := {"allow": false, "reasons": ["unknown-user"], "reply": "Send /pair to ask for access."} if input.command == "deny"

decision := {"allow": true, "reasons": []} if input.command == "conflict"

decision := {"allow": false, "reasons": ["other"]} if input.command == "conflict"

decision := {"allow": true, "reasons": [], "n": to_number("not a number")} if input.command == "builtin-error"

decision := "yes" if input.command == "not-object"

decision := {"allow": "true", "reasons": []} if input.command == "allow-string"

decision := {"allow": true, "reasons": [1]} if input.command == "reason-number"

decision := {"allow": false} if input.command == "deny-silent"

decision := {"allow": true, "reasons": [], "rate_limits": [{"key": "k", "rate": -1, "burst": 1}]} if input.command == "bad-bucket"

decision := {"allow": true, "reasons": [], "rate_limits": [
	{"key": "two-a", "rate": 0, "burst": 5},
	{"key": "two-b", "rate": 0, "burst": 1},
]} if input.command == "two-buckets"

decision := {"allow": true, "reasons": [], "n": n} if {
	input.command == "slow"
	n := count([x | some x in numbers.range(1, 100000000); x % 7 == 0])
}

default greeting := "none"

greeting := data.parachute.config.greeting
