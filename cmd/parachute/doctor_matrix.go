package main

import (
	"fmt"
	"os"
	"sort"

	"github.com/parachute-gateway/parachute/config"
	"github.com/parachute-gateway/parachute/connectors/matrix"
)

// doctorMatrixE2EE is matrixChecks with the process environment.
func doctorMatrixE2EE(cfg *config.Config) []finding { return matrixChecks(cfg, os.Getenv) }

// matrixChecks checks the config's Matrix connectors with encryption:
// true (none: no checks): the build has E2EE, the pickle key is set and long
// enough, a named recovery key is set, and the store path passes the
// rules the connector applies when it opens it.
func matrixChecks(cfg *config.Config, getenv func(string) string) []finding {
	var names []string
	for n, k := range cfg.Connectors {
		if k != nil && k.Type == "matrix" && k.Encryption {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var out []finding
	for _, n := range names {
		k := cfg.Connectors[n]
		pre := "matrix " + n + " "
		if !matrix.EncryptionBuilt {
			out = append(out, finding{Check: pre + "e2ee build", Status: statusFail, Detail: "this parachute binary was built without end-to-end encryption",
				Fix: "rebuild with `make build` (go build -tags goolm ./cmd/parachute)"})
		}
		pk := getenv(k.PickleKeyEnv)
		switch {
		case pk == "":
			out = append(out, finding{Check: pre + "pickle key", Status: statusFail, Detail: "$" + k.PickleKeyEnv + " is not set",
				Fix: "export " + k.PickleKeyEnv + "=$(openssl rand -hex 32) in the gateway's environment, and keep it: the device's keys cannot be read without it"})
		case len(pk) < matrix.MinPickleKey:
			out = append(out, finding{Check: pre + "pickle key", Status: statusFail, Detail: fmt.Sprintf("$%s has %d bytes, at least %d are needed", k.PickleKeyEnv, len(pk), matrix.MinPickleKey),
				Fix: "use a longer key (openssl rand -hex 32); a new key needs a new store, so move the old one away"})
		default:
			out = append(out, finding{Check: pre + "pickle key", Status: statusOK, Detail: "$" + k.PickleKeyEnv + " is set"})
		}
		if k.RecoveryKeyEnv != "" {
			if getenv(k.RecoveryKeyEnv) == "" {
				out = append(out, finding{Check: pre + "recovery key", Status: statusFail, Detail: "$" + k.RecoveryKeyEnv + " is not set",
					Fix: "export " + k.RecoveryKeyEnv + "=<the bot account's recovery key> (see docs/connectors.md, Matrix), or remove recovery_key_env"})
			} else {
				out = append(out, finding{Check: pre + "recovery key", Status: statusOK, Detail: "$" + k.RecoveryKeyEnv + " is set"})
			}
		}
		store := cfg.CryptoStorePath(n)
		if err := matrix.CheckStorePath(store); err != nil {
			out = append(out, finding{Check: pre + "crypto store", Status: statusFail, Detail: err.Error(), Fix: "the store must be a 0600 file of the gateway's user in a folder only it can write"})
		} else {
			out = append(out, finding{Check: pre + "crypto store", Status: statusOK, Detail: store})
		}
	}
	return out
}
