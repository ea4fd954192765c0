package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/parachute-gateway/parachute/config"
	"github.com/parachute-gateway/parachute/connectors/pairing"
)

// EnvConfig names the config every operator command reads when --config
// is not given.
const EnvConfig = "PARACHUTE_CONFIG"

// defaultConfigs are looked for, in order, when neither --config nor
// $PARACHUTE_CONFIG names a config. The first is what `make run` writes.
var defaultConfigs = []string{"parachute.yaml", "/etc/parachute/config.yaml"}

// errNoConfig: no --config, no $PARACHUTE_CONFIG and no default file.
var errNoConfig = errors.New("no config: pass --config FILE, set " + EnvConfig + ", or put the gateway's config in ./parachute.yaml or /etc/parachute/config.yaml")

// configFlag registers --config on fs.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "", "the gateway's config (default $"+EnvConfig+", else ./parachute.yaml, else /etc/parachute/config.yaml)")
}

// opConfig is the gateway config an operator command works from, with
// the paths the gateway would use.
type opConfig struct {
	Path string // the file, as found
	Cfg  *config.Config
}

// findConfig names the config file: --config, then $PARACHUTE_CONFIG,
// then the first default that exists.
func findConfig(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if v := os.Getenv(EnvConfig); v != "" {
		return v, nil
	}
	for _, p := range defaultConfigs {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errNoConfig
}

// loadOpConfig reads and validates the config as the gateway does and
// makes its paths absolute the same way (relative to the current folder,
// where `parachute serve` resolves them too), so a command reads the
// files the gateway writes.
func loadOpConfig(flagValue string) (*opConfig, error) {
	path, err := findConfig(flagValue)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if err := absPaths(cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &opConfig{Path: path, Cfg: cfg}, nil
}

// absPaths makes the config's paths absolute, as gateway.New does; the
// containerd socket too (gRPC reads a relative path's first element as an
// authority: "invalid (non-empty) authority").
func absPaths(cfg *config.Config) error {
	for _, p := range []*string{&cfg.Vault, &cfg.StateDir, &cfg.Policies, &cfg.Audit.Dir, &cfg.Audit.KeyFile, &cfg.Runtime.Socket} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return fmt.Errorf("config path %q: %w", *p, err)
		}
		*p = abs
	}
	return nil
}

// pairingStore is the gateway's pairing store file.
func (o *opConfig) pairingStore() string { return pairing.PathIn(o.Cfg.StateDir) }

// sessionStore is the gateway's session store file.
func (o *opConfig) sessionStore() string { return filepath.Join(o.Cfg.StateDir, "sessions.db") }

// mustExist refuses to go on when what the config names is not there: a
// command never creates an empty store or reads an empty log in the
// wrong place without saying so.
func (o *opConfig) mustExist(what, path string) error {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s %s (from the config %s) does not exist: has the gateway run with this config? "+
				"Start it (parachute serve --config %s) or pass --config for the gateway you mean", what, path, o.Path, o.Path)
		}
		return fmt.Errorf("%s %s (from the config %s): %w", what, path, o.Path, err)
	}
	return nil
}
