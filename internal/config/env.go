package config

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The standard Docker client variables Load honours, below INTERLOCK_*.
const (
	envDockerHost      = "DOCKER_HOST"
	envDockerTLSVerify = "DOCKER_TLS_VERIFY"
	envDockerCertPath  = "DOCKER_CERT_PATH"
)

// environment is the process environment by variable name.
type environment map[string]string

// readEnviron indexes "KEY=value" entries; a later entry for the same key
// wins, as with os/exec. Entries without '=' are ignored.
func readEnviron(environ []string) environment {
	env := environment{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			env[k] = v
		}
	}
	return env
}

// applyDockerEnv applies the Docker CLI's own variables, as the Docker CLI
// reads them: an empty value is unset. DOCKER_TLS_VERIFY turns verification
// on for any value but "0" and "false", and never turns it off: a stray
// DOCKER_TLS_VERIFY=0 must not weaken a file that asks for verification
// (use INTERLOCK_TLS_VERIFY=false or --tls-verify=false for that).
// DOCKER_CERT_PATH=DIR sets tls_ca, tls_cert and tls_key to DIR/ca.pem,
// DIR/cert.pem and DIR/key.pem; INTERLOCK_* and flags still override each.
func applyDockerEnv(c *Config, o origins, env environment) {
	if v := env[envDockerHost]; v != "" {
		c.DockerHost = v
		o["docker_host"] = source{kind: srcDockerEnv, env: envDockerHost}
	}
	if v := env[envDockerTLSVerify]; v != "" && v != "0" && !strings.EqualFold(v, "false") {
		c.TLSVerify = true
		o["tls_verify"] = source{kind: srcDockerEnv, env: envDockerTLSVerify}
	}
	if dir := env[envDockerCertPath]; dir != "" {
		c.TLSCA = filepath.Join(dir, "ca.pem")
		c.TLSCert = filepath.Join(dir, "cert.pem")
		c.TLSKey = filepath.Join(dir, "key.pem")
		for _, k := range []string{"tls_ca", "tls_cert", "tls_key"} {
			o[k] = source{kind: srcDockerEnv, env: envDockerCertPath}
		}
	}
}

// applyEnv applies every INTERLOCK_* variable in env. It returns one error
// per unknown variable and per value that does not parse, in name order;
// the other values are applied. INTERLOCK_CONFIG is known but read by Load.
func applyEnv(c *Config, o origins, env environment) []error {
	names := make([]string, 0, len(env))
	for k := range env {
		if strings.HasPrefix(k, envPrefix) && k != envConfig {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	var errs []error
	for _, name := range names {
		s, ok := settingByEnv(name)
		if !ok {
			errs = append(errs, unknownEnvError(name))
			continue
		}
		if err := s.setString(c, env[name]); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		o[s.key()] = source{kind: srcEnv}
	}
	return errs
}

// settingByEnv returns the setting whose environment variable is name.
func settingByEnv(name string) (setting, bool) {
	for _, s := range settings {
		if s.env() == name {
			return s, true
		}
	}
	return setting{}, false
}

// unknownEnvError reports an INTERLOCK_* variable that is no setting.
func unknownEnvError(name string) error {
	known := []string{envConfig}
	for _, s := range settings {
		known = append(known, s.env())
	}
	if m, ok := suggest(name, known); ok {
		return fmt.Errorf("unknown environment variable %s; did you mean %s?", name, m)
	}
	return fmt.Errorf("unknown environment variable %s; unset it (the %s* names are the flags in upper snake case, see interlock run -h)", name, envPrefix)
}

// setString sets the setting in c from the text of an environment
// variable. Booleans are strictly true, false, 1 or 0.
func (s setting) setString(c *Config, v string) error {
	switch p := s.field(c).(type) {
	case *string:
		*p = v
	case *bool:
		switch v {
		case "true", "1":
			*p = true
		case "false", "0":
			*p = false
		default:
			return fmt.Errorf("%q is not a boolean; want true, false, 1 or 0", v)
		}
	case *time.Duration:
		d, err := parseDuration(v)
		if err != nil {
			return err
		}
		*p = d
	case *ByteSize:
		b, err := ParseByteSize(v)
		if err != nil {
			return err
		}
		*p = b
	}
	return nil
}
