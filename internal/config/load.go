package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Load builds the configuration of `interlock run` from, lowest precedence
// first: Default, the TOML file named by --config (or else INTERLOCK_CONFIG),
// the standard Docker environment (DOCKER_HOST, DOCKER_TLS_VERIFY,
// DOCKER_CERT_PATH), INTERLOCK_* environment variables, then the flags in
// args that were actually given. args excludes the command name ("run");
// environ is "KEY=value" entries as from os.Environ, where a later entry
// for the same key wins. An INTERLOCK_* variable that is set but empty
// counts as set (INTERLOCK_NETWORK= selects published ports); an empty
// DOCKER_* variable counts as unset, as in the Docker CLI.
//
// The result is validated. On error Load returns the zero Config and an
// error naming every problem it found (errors.Join), each under the
// setting's name as the user wrote it: "--proxy", "INTERLOCK_PROXY",
// "proxy in /etc/interlock.toml". For -h or --help it returns an error
// wrapping flag.ErrHelp and prints nothing; the caller then prints the
// usage: d := Default(); fs := d.FlagSet(); fs.Usage().
func Load(args []string, environ []string) (Config, error) {
	// Flags are parsed first, into a scratch Config, because --config
	// decides which file to read; they are applied last.
	cmdline := Default()
	fs := cmdline.FlagSet()
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return Config{}, flagError(err)
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q; run takes flags only (see interlock run -h)", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	env := readEnviron(environ)
	c, o := Default(), origins{}
	var errs []error

	path, pathFrom := "", ""
	if given[flagConfig] {
		path, pathFrom = cmdline.File, "--"+flagConfig
	} else if p, ok := env[envConfig]; ok {
		path, pathFrom = p, envConfig
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("%s: %w; fix the path or leave it unset to use no file", pathFrom, err)
		}
		ok, err := applyFile(&c, o, path, data)
		if !ok {
			// Without the file's values every later check would be a guess.
			return Config{}, err
		}
		errs = append(errs, err)
		c.File = path
	}

	applyDockerEnv(&c, o, env)
	errs = append(errs, applyEnv(&c, o, env)...)
	for _, s := range settings {
		if given[s.flag] {
			s.copyField(&c, &cmdline)
			o[s.key()] = source{kind: srcFlag}
		}
	}
	errs = append(errs, c.validate(o))
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	return c, nil
}

// LoadFile parses and validates the TOML file at path on top of Default,
// with no environment and no flags: what `interlock check` needs. The
// result's File is path. Errors are as for Load.
func LoadFile(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	c, err := parse(path, data)
	if err != nil {
		return Config{}, err
	}
	return c, nil
}

// parse is LoadFile once the file is read: TOML data named path, on top of
// Default, validated. It never panics, whatever data holds (FuzzParse).
func parse(path string, data []byte) (Config, error) {
	c, o := Default(), origins{}
	ok, err := applyFile(&c, o, path, data)
	if !ok {
		return Config{}, err
	}
	if err := errors.Join(err, c.validate(o)); err != nil {
		return Config{}, err
	}
	c.File = path
	return c, nil
}

// flagError adds a suggestion to the flag package's error for an unknown
// flag, and keeps flag.ErrHelp recognisable.
func flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	const undefined = "flag provided but not defined: -"
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, undefined); ok {
		known := []string{flagConfig}
		for _, s := range settings {
			known = append(known, s.flag)
		}
		if m, ok := suggest(strings.TrimLeft(name, "-"), known); ok {
			return fmt.Errorf("%w; did you mean --%s?", err, m)
		}
		return fmt.Errorf("%w; see interlock run -h for the flags", err)
	}
	return err
}

// sourceKind says where a setting's value came from.
type sourceKind int

const (
	srcDefault sourceKind = iota
	srcFile
	srcDockerEnv
	srcEnv
	srcFlag
)

// source is where one setting's value came from.
type source struct {
	kind sourceKind
	file string // srcFile: the file's path
	env  string // srcDockerEnv: the DOCKER_* variable
}

// origins maps a TOML key to the source of its value; a key that is absent
// still has its default.
type origins map[string]source

// name is how the user wrote key: "--tls-ca", "INTERLOCK_TLS_CA",
// "tls_ca in FILE", "DOCKER_HOST", "tls_ca from DOCKER_CERT_PATH", or the
// bare TOML key for a default (and for Validate, which knows no sources).
func (o origins) name(key string) string {
	src := o[key]
	switch src.kind {
	case srcFile:
		return key + " in " + src.file
	case srcDockerEnv:
		if src.env == envDockerCertPath {
			return key + " from " + envDockerCertPath
		}
		return src.env
	case srcEnv:
		return envPrefix + strings.ToUpper(key)
	case srcFlag:
		return "--" + strings.ReplaceAll(key, "_", "-")
	}
	return key
}

// nameLike is how key would be written in the same kind of source as
// other: the unset half of a pair is named in the user's own terms
// ("--tls-cert is set but --tls-key is not").
func (o origins) nameLike(key, other string) string {
	switch o[other].kind {
	case srcEnv:
		return envPrefix + strings.ToUpper(key)
	case srcFlag:
		return "--" + strings.ReplaceAll(key, "_", "-")
	}
	return key
}

// names names two settings at once: "a and b in FILE" when both come from
// one file, else "name(a) and name(b)".
func (o origins) names(a, b string) string {
	if sa, sb := o[a], o[b]; sa.kind == srcFile && sa == sb {
		return a + " and " + b + " in " + sa.file
	}
	return o.name(a) + " and " + o.name(b)
}
