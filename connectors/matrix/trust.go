package matrix

import "maunium.net/go/mautrix/id"

// verdict is what a decrypted message's device trust makes of it.
type verdict int

const (
	senderTrusted    verdict = iota // handled as the sender
	senderUnverified                // handled as the sender, Unverified: guest
	senderForged                    // refused: not tied to a device of the sender
)

// judge maps mautrix's trust state of the device that holds a message's
// megolm session (as found among the event sender's devices) to a verdict.
//
// Trusted: the bot verified the device, or the device is cross-signed by
// its owner's self-signing key under a master key that the bot verified
// or has seen since it first met the user (trust on first use: a changed
// master key drops to CrossSignedUntrusted). Unverified: a device of the
// sender that its owner never cross-signed, a changed master key, keys
// forwarded by another device or restored from a backup. Forged: the
// session's keys belong to no device of the sender, differ from the
// device's, or the device is blacklisted; so are states this code does
// not know (fail closed).
func judge(ts id.TrustState) verdict {
	switch ts {
	case id.TrustStateVerified, id.TrustStateCrossSignedVerified, id.TrustStateCrossSignedTOFU:
		return senderTrusted
	case id.TrustStateUnset, id.TrustStateCrossSignedUntrusted, id.TrustStateForwarded, id.TrustStateBackup:
		return senderUnverified
	default: // UnknownDevice, DeviceKeyMismatch, Blacklisted, Invalid, anything new
		return senderForged
	}
}
