package main

import (
	"fmt"
	"sort"

	"github.com/parachute-gateway/parachute/config"
	"github.com/parachute-gateway/parachute/connectors/matrix"
	"github.com/parachute-gateway/parachute/runtime"
)

// matrixChecks checks the config's Matrix connectors with encryption:
// true (none: no checks): the build has E2EE, the pickle key is set and long
// enough, a named recovery key is set, and the store path passes the
// rules the connector applies when it opens it.
func matrixChecks(cfg *config.Config, getenv func(string) string) []runtime.Check {
	var names []string
	for n, k := range cfg.Connectors {
		if k != nil && k.Type == "matrix" && k.Encryption {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var out []runtime.Check
	for _, n := range names {
		k := cfg.Connectors[n]
		pre := "matrix " + n + " "
		if !matrix.EncryptionBuilt {
			out = append(out, runtime.Check{Name: pre + "e2ee build", Detail: "this parachute binary was built without end-to-end encryption",
				Fix: "rebuild with `make build` (go build -tags goolm ./cmd/parachute)"})
		}
		pk := getenv(k.PickleKeyEnv)
		switch {
		case pk == "":
			out = append(out, runtime.Check{Name: pre + "pickle key", Detail: "$" + k.PickleKeyEnv + " is not set",
				Fix: "export " + k.PickleKeyEnv + "=$(openssl rand -hex 32) in the gateway's environment, and keep it: the device's keys cannot be read without it"})
		case len(pk) < matrix.MinPickleKey:
			out = append(out, runtime.Check{Name: pre + "pickle key", Detail: fmt.Sprintf("$%s has %d bytes, at least %d are needed", k.PickleKeyEnv, len(pk), matrix.MinPickleKey),
				Fix: "use a longer key (openssl rand -hex 32); a new key needs a new store, so move the old one away"})
		default:
			out = append(out, runtime.Check{Name: pre + "pickle key", OK: true, Detail: "$" + k.PickleKeyEnv + " is set"})
		}
		if k.RecoveryKeyEnv != "" {
			if getenv(k.RecoveryKeyEnv) == "" {
				out = append(out, runtime.Check{Name: pre + "recovery key", Detail: "$" + k.RecoveryKeyEnv + " is not set",
					Fix: "export " + k.RecoveryKeyEnv + "=<the bot account's recovery key> (see docs/connectors.md, Matrix), or remove recovery_key_env"})
			} else {
				out = append(out, runtime.Check{Name: pre + "recovery key", OK: true, Detail: "$" + k.RecoveryKeyEnv + " is set"})
			}
		}
		store := cfg.CryptoStorePath(n)
		if err := matrix.CheckStorePath(store); err != nil {
			out = append(out, runtime.Check{Name: pre + "crypto store", Detail: err.Error(), Fix: "the store must be a 0600 file of the gateway's user in a folder only it can write"})
		} else {
			out = append(out, runtime.Check{Name: pre + "crypto store", OK: true, Detail: store})
		}
	}
	return out
}
