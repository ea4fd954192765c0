package matrix

import (
	"testing"

	"maunium.net/go/mautrix/id"
)

func TestJudge(t *testing.T) {
	tests := []struct {
		ts   id.TrustState
		want verdict
	}{
		{id.TrustStateVerified, senderTrusted},
		{id.TrustStateCrossSignedVerified, senderTrusted},
		{id.TrustStateCrossSignedTOFU, senderTrusted},
		{id.TrustStateCrossSignedUntrusted, senderUnverified}, // master key changed
		{id.TrustStateUnset, senderUnverified},                // never cross-signed
		{id.TrustStateForwarded, senderUnverified},
		{id.TrustStateBackup, senderUnverified},
		{id.TrustStateUnknownDevice, senderForged}, // the session is no device of the sender
		{id.TrustStateDeviceKeyMismatch, senderForged},
		{id.TrustStateBlacklisted, senderForged},
		{id.TrustStateInvalid, senderForged},
		{id.TrustState(12345), senderForged}, // unknown: fail closed
	}
	for _, tt := range tests {
		if got := judge(tt.ts); got != tt.want {
			t.Errorf("judge(%v) = %d, want %d", tt.ts, got, tt.want)
		}
	}
}
