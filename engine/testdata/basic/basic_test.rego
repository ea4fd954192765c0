package parachute.message_test

import data.parachute.message

test_allow if message.decision.allow with input as {"command": "allow", "sender": {"id": "local:a"}}

test_deny if not message.decision.allow with input as {"command": "deny"}
