package parachute.tool

default decision := {"allow": false, "reasons": ["default-deny"]}

decision := {"allow": true, "reasons": []} if input.session.role == "owner"
