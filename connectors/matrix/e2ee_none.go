//go:build !goolm

package matrix

import (
	"context"
	"errors"

	"maunium.net/go/mautrix"
)

// EncryptionBuilt reports whether this build has end-to-end encryption
// (the pure-Go olm of mautrix, selected by the build tag goolm).
const EncryptionBuilt = false

func startEncryption(context.Context, *Connector, *mautrix.Client) (encryption, error) {
	return nil, errors.New("this build has no end-to-end encryption (build with -tags goolm)")
}
