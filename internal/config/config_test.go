package config

import (
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// certDir copies the test certificates (one CA, one client pair) into a
// fresh directory, so tests can give each source its own path to the same
// valid pair.
func certDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"ca.pem", "cert.pem", "key.pem"} {
		data, err := os.ReadFile(filepath.Join("testdata", "certs", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// writeTOML writes a config file in a fresh directory and returns its path.
func writeTOML(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "interlock.toml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// plain is a setting's value as text, unquoted: what the tests compare.
func plain(s setting, c *Config) string {
	switch p := s.field(c).(type) {
	case *string:
		return *p
	case *bool:
		return strconv.FormatBool(*p)
	case *time.Duration:
		return p.String()
	case *ByteSize:
		return p.String()
	}
	panic("unknown kind")
}

func mustSetting(t *testing.T, key string) setting {
	t.Helper()
	s, ok := settingByKey(key)
	if !ok {
		t.Fatalf("no setting %q", key)
	}
	return s
}

// wantErr fails unless err holds every substring in want.
func wantErr(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not contain %q:\n%v", w, err)
		}
	}
}

func TestDefault(t *testing.T) {
	def := Default()
	if err := def.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		environ []string
	}{
		{name: "nothing"},
		{name: "empty args and environ", args: []string{}, environ: []string{}},
		{name: "unrelated environment", environ: []string{"HOME=/root", "PATH=/bin", "NOEQUALS", "DOCKER_CONFIG=/x"}},
		{name: "empty docker variables are unset", environ: []string{"DOCKER_HOST=", "DOCKER_TLS_VERIFY=", "DOCKER_CERT_PATH="}},
		{name: "empty INTERLOCK_CONFIG is no file", environ: []string{"INTERLOCK_CONFIG="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Load(tc.args, tc.environ)
			if err != nil {
				t.Fatal(err)
			}
			if got != def {
				t.Errorf("Load = %v\nwant %v", got, def)
			}
		})
	}
	t.Run("empty file", func(t *testing.T) {
		path := writeTOML(t, "# nothing\n")
		got, err := LoadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		want := def
		want.File = path
		if got != want {
			t.Errorf("LoadFile = %v\nwant %v", got, want)
		}
	})
}

// fullWant is testdata/good/full.toml decoded.
func fullWant() Config {
	return Config{
		File:           filepath.Join("testdata", "good", "full.toml"),
		DockerHost:     "tcp://docker.example.com:2376",
		TLSCA:          filepath.Join("testdata", "certs", "ca.pem"),
		TLSCert:        filepath.Join("testdata", "certs", "cert.pem"),
		TLSKey:         filepath.Join("testdata", "certs", "key.pem"),
		TLSVerify:      true,
		Proxy:          ProxyHAProxy,
		HTTPAddr:       "0.0.0.0:80",
		APIAddr:        "[::1]:9081",
		BackendAddress: "192.0.2.10",
		Network:        "edge_net.1",
		ResyncInterval: 90 * time.Second,
		LogLevel:       "debug",
		LogFormat:      "json",

		HTTPSAddr:            "0.0.0.0:443",
		CertDir:              filepath.Join("testdata", "certs"),
		TLSProfile:           "modern",
		TLSCiphers:           "ECDHE-RSA-AES128-GCM-SHA256",
		TLSProtocols:         "TLSv1.3",
		Template:             filepath.Join("testdata", "good", "custom.tmpl"),
		StateDir:             "/srv/interlock",
		ReloadQuiet:          250 * time.Millisecond,
		ReloadMaxWait:        3 * time.Second,
		NginxBinary:          "/usr/local/sbin/nginx",
		NginxConfig:          "/srv/nginx/nginx.conf",
		NginxPidFile:         "/run/nginx.pid",
		NginxTarget:          NginxContainers,
		NginxDelivery:        NginxVolume,
		NginxContainerConfig: "/etc/nginx/interlock.conf",
		ProxyContainerLabel:  "edge",
		ProxyDockerHost:      "unix:///run/proxy-node/docker.sock",
		HAProxyBinary:        "/usr/local/sbin/haproxy",
		HAProxyConfig:        "/srv/haproxy/haproxy.cfg",
		HAProxyTarget:        TargetContainers,
		TCPAddr:              "0.0.0.0:8444",
		StatsAddr:            "[::1]:9404",
		DrainTimeout:         45 * time.Second,
		HSTSMaxAge:           8760 * time.Hour,
		BuiltinEngine:        EngineNetHTTP,

		ProxyProtocolTrustedIPs:      "10.0.0.0/8, 192.168.1.10",
		ForwardedHeadersTrustedIPs:   "fd00::/8",
		AccessLog:                    filepath.Join("testdata", "good", "access.log"),
		AccessLogFormat:              AccessLogJSON,
		ClientReadHeaderTimeout:      5 * time.Second,
		ClientReadTimeout:            time.Minute,
		ClientIdleTimeout:            30 * time.Second,
		BackendConnectTimeout:        500 * time.Millisecond,
		BackendResponseHeaderTimeout: time.Minute,
		BackendIdleTimeout:           45 * time.Second,
		MaxHeaderBytes:               64 << 10,
		MaxBodyBytes:                 10 << 20,

		ACMEHosts:      ACMEAll,
		ACMEEmail:      "ops@example.com",
		ACMECA:         "https://acme-staging-v02.api.letsencrypt.org/directory",
		ACMECARoot:     filepath.Join("testdata", "certs", "ca.pem"),
		ACMEStorage:    "/srv/interlock/acme",
		ACMEChallenges: ACMEHTTP01,

		ACMEChallengeAddr: "10.0.0.5:8082",

		Role:        RoleController,
		FeedAddr:    "0.0.0.0:9444",
		FeedCA:      filepath.Join("testdata", "certs", "ca.pem"),
		FeedCert:    filepath.Join("testdata", "certs", "cert.pem"),
		FeedKey:     filepath.Join("testdata", "certs", "key.pem"),
		Controllers: "https://controller1.example.com:8444,https://10.0.0.2:8444",
		EdgeName:    "edge-eu-1",
	}
}

// encodeTOML writes c back as a config file body, every setting included.
func encodeTOML(t testing.TB, c Config) []byte {
	t.Helper()
	m := map[string]any{}
	for _, s := range settings {
		switch p := s.field(&c).(type) {
		case *string:
			m[s.key()] = *p
		case *bool:
			m[s.key()] = *p
		case *time.Duration:
			m[s.key()] = p.String()
		case *ByteSize:
			m[s.key()] = p.String()
		}
	}
	var b strings.Builder
	if err := toml.NewEncoder(&b).Encode(m); err != nil {
		t.Fatal(err)
	}
	return []byte(b.String())
}

func TestGoodFull(t *testing.T) {
	want := fullWant()
	path := want.File

	// Every setting must differ from its default, or the file proves
	// nothing about that key.
	def := Default()
	for _, s := range settings {
		if plain(s, &want) == plain(s, &def) {
			t.Errorf("full.toml leaves %s at its default %q", s.key(), plain(s, &def))
		}
	}

	got, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("LoadFile(%s) =\n%v\nwant\n%v", path, got, want)
	}

	t.Run("via --config", func(t *testing.T) {
		got, err := Load([]string{"--config", path}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("Load = %v\nwant %v", got, want)
		}
	})
	t.Run("via INTERLOCK_CONFIG", func(t *testing.T) {
		got, err := Load(nil, []string{"INTERLOCK_CONFIG=" + path})
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("Load = %v\nwant %v", got, want)
		}
	})
	t.Run("round trip", func(t *testing.T) {
		// TLS paths are now relative to the working directory, so the
		// re-encoded file is read as if it were here.
		again, err := parse("roundtrip.toml", encodeTOML(t, got))
		if err != nil {
			t.Fatal(err)
		}
		again.File = got.File
		if again != got {
			t.Errorf("round trip =\n%v\nwant\n%v", again, got)
		}
	})
}

// TestPrecedence checks, for every setting and every combination of the
// sources that can set it, that the highest source set wins: defaults <
// file < DOCKER_* < INTERLOCK_* < flags.
func TestPrecedence(t *testing.T) {
	dirs := []string{certDir(t), certDir(t), certDir(t), certDir(t), certDir(t)}
	in := func(i int, name string) string { return filepath.Join(dirs[i], name) }
	const (
		layerFile = iota
		layerDocker
		layerEnv
		layerFlag
		numLayers
	)
	layerNames := [numLayers]string{"file", "docker", "env", "flag"}

	tests := []struct {
		key string
		// value per layer, as the layer is written; docker is a full
		// environment entry, "" when no DOCKER_* variable sets the key.
		file   string // TOML value literal
		docker string
		env    string
		flag   string
		// want per layer: default, file, docker, env, flag.
		want [numLayers + 1]string
		// always in the file or on the command line, for settings that
		// need a partner
		baseFile  string
		baseFlags []string
		// the partner alone is invalid, so some source must set the key
		noDefault bool
	}{
		{
			key: "docker_host", file: `"unix:///file.sock"`, docker: "DOCKER_HOST=unix:///docker.sock",
			env: "unix:///env.sock", flag: "tcp://127.0.0.1:2375",
			want: [...]string{defaultDockerHost, "unix:///file.sock", "unix:///docker.sock", "unix:///env.sock", "tcp://127.0.0.1:2375"},
		},
		{
			key: "tls_ca", file: strconv.Quote(in(1, "ca.pem")), docker: "DOCKER_CERT_PATH=" + dirs[2],
			env: in(3, "ca.pem"), flag: in(4, "ca.pem"),
			want: [...]string{"", in(1, "ca.pem"), in(2, "ca.pem"), in(3, "ca.pem"), in(4, "ca.pem")},
		},
		{
			key: "tls_cert", file: strconv.Quote(in(1, "cert.pem")), docker: "DOCKER_CERT_PATH=" + dirs[2],
			env: in(3, "cert.pem"), flag: in(4, "cert.pem"),
			want:     [...]string{"", in(1, "cert.pem"), in(2, "cert.pem"), in(3, "cert.pem"), in(4, "cert.pem")},
			baseFile: "tls_key = " + strconv.Quote(in(0, "key.pem")), noDefault: true,
		},
		{
			key: "tls_key", file: strconv.Quote(in(1, "key.pem")), docker: "DOCKER_CERT_PATH=" + dirs[2],
			env: in(3, "key.pem"), flag: in(4, "key.pem"),
			want:     [...]string{"", in(1, "key.pem"), in(2, "key.pem"), in(3, "key.pem"), in(4, "key.pem")},
			baseFile: "tls_cert = " + strconv.Quote(in(0, "cert.pem")), noDefault: true,
		},
		{
			// DOCKER_TLS_VERIFY can only turn verification on, so the
			// layers alternate where they can.
			key: "tls_verify", file: "true", docker: "DOCKER_TLS_VERIFY=1", env: "false", flag: "true",
			want:      [...]string{"false", "true", "true", "false", "true"},
			baseFlags: []string{"--docker-host=tcp://127.0.0.1:2376"},
		},
		{
			// The flag sets the default value: given, it still wins.
			key: "proxy", file: `"nginx"`, env: "haproxy", flag: "builtin",
			want: [...]string{"builtin", "nginx", "", "haproxy", "builtin"},
		},
		{
			key: "http_addr", file: `":1001"`, env: ":1002", flag: ":1003",
			want: [...]string{":8080", ":1001", "", ":1002", ":1003"},
		},
		{
			key: "api_addr", file: `"127.0.0.1:2001"`, env: "[::1]:2002", flag: "localhost:2003",
			want: [...]string{"127.0.0.1:8081", "127.0.0.1:2001", "", "[::1]:2002", "localhost:2003"},
		},
		{
			key: "backend_address", file: `"10.0.0.1"`, env: "10.0.0.2", flag: "docker.example.com",
			want: [...]string{"127.0.0.1", "10.0.0.1", "", "10.0.0.2", "docker.example.com"},
		},
		{
			// The flag sets the empty value: given, it still wins.
			key: "network", file: `"file_net"`, env: "env.net", flag: "",
			want: [...]string{"", "file_net", "", "env.net", ""},
		},
		{
			key: "resync_interval", file: `"2s"`, env: "3s", flag: "1m",
			want: [...]string{"30s", "2s", "", "3s", "1m0s"},
		},
		{
			key: "log_level", file: `"warn"`, env: "error", flag: "debug",
			want: [...]string{"info", "warn", "", "error", "debug"},
		},
		{
			key: "log_format", file: `"json"`, env: "text", flag: "json",
			want: [...]string{"text", "json", "", "text", "json"},
		},
		{
			key: "https_addr", file: `":3001"`, env: ":3002", flag: ":3003",
			want: [...]string{":8443", ":3001", "", ":3002", ":3003"},
		},
		{
			key: "cert_dir", file: `"/file/certs"`, env: "/env/certs", flag: "/flag/certs",
			want: [...]string{"/etc/interlock/certs", "/file/certs", "", "/env/certs", "/flag/certs"},
		},
		{
			key: "tls_profile", file: `"modern"`, env: "old", flag: "intermediate",
			want: [...]string{"intermediate", "modern", "", "old", "intermediate"},
		},
		{
			key: "tls_ciphers", file: `"ECDHE-RSA-AES128-GCM-SHA256"`, env: "ECDHE-RSA-AES256-GCM-SHA384", flag: "",
			want: [...]string{"", "ECDHE-RSA-AES128-GCM-SHA256", "", "ECDHE-RSA-AES256-GCM-SHA384", ""},
		},
		{
			key: "tls_protocols", file: `"TLSv1.3"`, env: "TLSv1.2", flag: "TLSv1.2 TLSv1.3",
			want: [...]string{"", "TLSv1.3", "", "TLSv1.2", "TLSv1.2 TLSv1.3"},
		},
		{
			key: "template", file: strconv.Quote(in(1, "ca.pem")), env: in(3, "ca.pem"), flag: in(4, "ca.pem"),
			want: [...]string{"", in(1, "ca.pem"), "", in(3, "ca.pem"), in(4, "ca.pem")},
		},
		{
			key: "state_dir", file: `"/file/state"`, env: "/env/state", flag: "/flag/state",
			want: [...]string{"/var/lib/interlock", "/file/state", "", "/env/state", "/flag/state"},
		},
		{
			key: "reload_quiet", file: `"10ms"`, env: "20ms", flag: "0s",
			want: [...]string{"100ms", "10ms", "", "20ms", "0s"},
		},
		{
			key: "reload_max_wait", file: `"4s"`, env: "3s", flag: "500ms",
			want: [...]string{"1s", "4s", "", "3s", "500ms"},
		},
		{
			key: "nginx_binary", file: `"/file/nginx"`, env: "/env/nginx", flag: "nginx-debug",
			want: [...]string{"nginx", "/file/nginx", "", "/env/nginx", "nginx-debug"},
		},
		{
			key: "nginx_config", file: `"/file/nginx.conf"`, env: "/env/nginx.conf", flag: "",
			want: [...]string{"", "/file/nginx.conf", "", "/env/nginx.conf", ""},
		},
		{
			key: "nginx_pid_file", file: `"/file/nginx.pid"`, env: "/env/nginx.pid", flag: "/flag/nginx.pid",
			want: [...]string{"", "/file/nginx.pid", "", "/env/nginx.pid", "/flag/nginx.pid"},
		},
		{
			key: "nginx_target", file: `"containers"`, env: "local", flag: "containers",
			want: [...]string{"local", "containers", "", "local", "containers"},
		},
		{
			key: "nginx_delivery", file: `"volume"`, env: "copy", flag: "volume",
			want: [...]string{"copy", "volume", "", "copy", "volume"},
		},
		{
			key: "nginx_container_config", file: `"/file.conf"`, env: "/env.conf", flag: "/flag.conf",
			want: [...]string{"/etc/nginx/nginx.conf", "/file.conf", "", "/env.conf", "/flag.conf"},
		},
		{
			key: "proxy_container_label", file: `"file"`, env: "env", flag: "flag",
			want: [...]string{"", "file", "", "env", "flag"},
		},
		{
			// No DOCKER_* variable sets it: DOCKER_HOST is the watched
			// engine's (TestProxyDockerHostNotFromDockerHost).
			key: "proxy_docker_host", file: `"unix:///file.sock"`, env: "unix:///env.sock", flag: "tcp://127.0.0.1:2375",
			want: [...]string{"", "unix:///file.sock", "", "unix:///env.sock", "tcp://127.0.0.1:2375"},
		},
		{
			key: "haproxy_target", file: `"containers"`, env: "local", flag: "containers",
			want: [...]string{"local", "containers", "", "local", "containers"},
		},
		{
			key: "haproxy_binary", file: `"/file/haproxy"`, env: "/env/haproxy", flag: "haproxy-debug",
			want: [...]string{"haproxy", "/file/haproxy", "", "/env/haproxy", "haproxy-debug"},
		},
		{
			key: "haproxy_config", file: `"/file/haproxy.cfg"`, env: "/env/haproxy.cfg", flag: "",
			want: [...]string{"", "/file/haproxy.cfg", "", "/env/haproxy.cfg", ""},
		},
		{
			// The flag sets the empty value: given, it still wins.
			key: "tcp_addr", file: `":4001"`, env: "127.0.0.1:4002", flag: "",
			want: [...]string{"", ":4001", "", "127.0.0.1:4002", ""},
		},
		{
			key: "stats_addr", file: `"127.0.0.1:5001"`, env: "[::1]:5002", flag: "127.0.0.2:5003",
			want: [...]string{"127.0.0.1:8404", "127.0.0.1:5001", "", "[::1]:5002", "127.0.0.2:5003"},
		},
		{
			key: "drain_timeout", file: `"5s"`, env: "1m", flag: "2s",
			want: [...]string{"30s", "5s", "", "1m0s", "2s"},
		},
		{
			// The flag sets the default value: given, it still wins.
			key: "hsts_max_age", file: `"1h"`, env: "2h", flag: "0s",
			want: [...]string{"0s", "1h0m0s", "", "2h0m0s", "0s"},
		},
		{
			key: "builtin_engine", file: `"nethttp"`, env: "fasthttp", flag: "nethttp",
			want: [...]string{"fasthttp", "nethttp", "", "fasthttp", "nethttp"},
		},
		{
			// The flag sets the empty value: given, it still wins.
			key: "proxy_protocol_trusted_ips", file: `"10.0.0.0/8"`, env: "127.0.0.1", flag: "",
			want: [...]string{"", "10.0.0.0/8", "", "127.0.0.1", ""},
		},
		{
			key: "forwarded_headers_trusted_ips", file: `"10.0.0.0/8"`, env: "::1", flag: "192.168.0.0/16,fd00::/8",
			want: [...]string{"", "10.0.0.0/8", "", "::1", "192.168.0.0/16,fd00::/8"},
		},
		{
			// "-" is no path: the file's directory is not prepended.
			key: "access_log", file: `"-"`, env: "/env/access.log", flag: "/flag/access.log",
			want: [...]string{"", "-", "", "/env/access.log", "/flag/access.log"},
		},
		{
			key: "access_log_format", file: `"json"`, env: "common", flag: "json",
			want: [...]string{"common", "json", "", "common", "json"},
		},
		{
			key: "client_read_header_timeout", file: `"5s"`, env: "6s", flag: "0s",
			want: [...]string{"30s", "5s", "", "6s", "0s"},
		},
		{
			key: "client_read_timeout", file: `"1m"`, env: "2m", flag: "3m",
			want: [...]string{"0s", "1m0s", "", "2m0s", "3m0s"},
		},
		{
			key: "client_idle_timeout", file: `"10s"`, env: "20s", flag: "0s",
			want: [...]string{"2m0s", "10s", "", "20s", "0s"},
		},
		{
			key: "backend_connect_timeout", file: `"2s"`, env: "250ms", flag: "1s",
			want: [...]string{"1s", "2s", "", "250ms", "1s"},
		},
		{
			key: "backend_response_header_timeout", file: `"30s"`, env: "1m", flag: "0s",
			want: [...]string{"0s", "30s", "", "1m0s", "0s"},
		},
		{
			key: "backend_idle_timeout", file: `"10s"`, env: "1m", flag: "5m",
			want: [...]string{"1m30s", "10s", "", "1m0s", "5m0s"},
		},
		{
			// A TOML integer is bytes.
			key: "max_header_bytes", file: `8192`, env: "16KiB", flag: "2MiB",
			want: [...]string{"1MiB", "8KiB", "", "16KiB", "2MiB"},
		},
		{
			key: "max_body_bytes", file: `"1GiB"`, env: "1000", flag: "0",
			want: [...]string{"0", "1GiB", "", "1000", "0"},
		},
		{
			// The flag sets the default value: given, it still wins.
			key: "acme_hosts", file: `"labelled"`, env: "all", flag: "off",
			want: [...]string{"off", "labelled", "", "all", "off"},
		},
		{
			// The flag sets the empty value: given, it still wins.
			key: "acme_email", file: `"file@example.com"`, env: "env@example.com", flag: "",
			want: [...]string{"", "file@example.com", "", "env@example.com", ""},
		},
		{
			key: "acme_ca", file: `"https://file.example/dir"`, env: "https://env.example/dir", flag: "https://127.0.0.1:14000/dir",
			want: [...]string{"https://acme-v02.api.letsencrypt.org/directory", "https://file.example/dir", "", "https://env.example/dir", "https://127.0.0.1:14000/dir"},
		},
		{
			key: "acme_ca_root", file: strconv.Quote(in(1, "ca.pem")), env: in(3, "ca.pem"), flag: in(4, "ca.pem"),
			want: [...]string{"", in(1, "ca.pem"), "", in(3, "ca.pem"), in(4, "ca.pem")},
		},
		{
			key: "acme_storage", file: `"/file/acme"`, env: "/env/acme", flag: "/flag/acme",
			want: [...]string{"", "/file/acme", "", "/env/acme", "/flag/acme"},
		},
		{
			key: "acme_challenges", file: `"http-01"`, env: "tls-alpn-01", flag: "tls-alpn-01,http-01",
			want: [...]string{"http-01,tls-alpn-01", "http-01", "", "tls-alpn-01", "tls-alpn-01,http-01"},
		},
		{
			key: "acme_challenge_addr", file: `"10.0.0.1:8082"`, env: "10.0.0.3:8082", flag: "10.0.0.4:8082",
			want: [...]string{"127.0.0.1:8082", "10.0.0.1:8082", "", "10.0.0.3:8082", "10.0.0.4:8082"},
		},
		{
			// The flag sets the default value: given, it still wins. The
			// feed files and controllers are there for the roles that
			// need them.
			key: "role", file: `"controller"`, env: "edge", flag: "all",
			want: [...]string{"all", "controller", "", "edge", "all"},
			baseFile: "feed_ca = " + strconv.Quote(in(0, "ca.pem")) + "\nfeed_cert = " + strconv.Quote(in(0, "cert.pem")) +
				"\nfeed_key = " + strconv.Quote(in(0, "key.pem")) + "\ncontrollers = \"https://127.0.0.1:8444\"",
		},
		{
			key: "feed_addr", file: `":9001"`, env: "127.0.0.1:9002", flag: "[::1]:9003",
			want: [...]string{":8444", ":9001", "", "127.0.0.1:9002", "[::1]:9003"},
		},
		{
			key: "feed_ca", file: strconv.Quote(in(1, "ca.pem")), env: in(3, "ca.pem"), flag: in(4, "ca.pem"),
			want: [...]string{"", in(1, "ca.pem"), "", in(3, "ca.pem"), in(4, "ca.pem")},
		},
		{
			key: "feed_cert", file: strconv.Quote(in(1, "cert.pem")), env: in(3, "cert.pem"), flag: in(4, "cert.pem"),
			want:     [...]string{"", in(1, "cert.pem"), "", in(3, "cert.pem"), in(4, "cert.pem")},
			baseFile: "feed_key = " + strconv.Quote(in(0, "key.pem")), noDefault: true,
		},
		{
			key: "feed_key", file: strconv.Quote(in(1, "key.pem")), env: in(3, "key.pem"), flag: in(4, "key.pem"),
			want:     [...]string{"", in(1, "key.pem"), "", in(3, "key.pem"), in(4, "key.pem")},
			baseFile: "feed_cert = " + strconv.Quote(in(0, "cert.pem")), noDefault: true,
		},
		{
			// The flag sets the empty value: given, it still wins.
			key: "controllers", file: `"https://controller1.example.com:8444"`, env: "https://10.0.0.2:8444,https://10.0.0.3:8444", flag: "",
			want: [...]string{"", "https://controller1.example.com:8444", "", "https://10.0.0.2:8444,https://10.0.0.3:8444", ""},
		},
		{
			key: "edge_name", file: `"edge-file"`, env: "edge-env", flag: "edge-flag",
			want: [...]string{"", "edge-file", "", "edge-env", "edge-flag"},
		},
	}
	covered := map[string]bool{}
	for _, tc := range tests {
		s := mustSetting(t, tc.key)
		covered[tc.key] = true
		for mask := 0; mask < 1<<numLayers; mask++ {
			set := func(layer int) bool { return mask&(1<<layer) != 0 }
			if set(layerDocker) && tc.docker == "" || mask == 0 && tc.noDefault {
				continue
			}
			var names []string
			top := 0 // index into want: 0 is the default
			for l := range numLayers {
				if set(l) {
					names = append(names, layerNames[l])
					top = l + 1
				}
			}
			if len(names) == 0 {
				names = []string{"default"}
			}
			t.Run(tc.key+"/"+strings.Join(names, "+"), func(t *testing.T) {
				body := tc.baseFile + "\n"
				if set(layerFile) {
					body += tc.key + " = " + tc.file + "\n"
				}
				args := append([]string{"--config", writeTOML(t, body)}, tc.baseFlags...)
				var environ []string
				if set(layerDocker) {
					environ = append(environ, tc.docker)
				}
				if set(layerEnv) {
					environ = append(environ, s.env()+"="+tc.env)
				}
				if set(layerFlag) {
					args = append(args, "--"+s.flag+"="+tc.flag)
				}
				got, err := Load(args, environ)
				if err != nil {
					t.Fatalf("Load(%q, %q): %v", args, environ, err)
				}
				if v := plain(s, &got); v != tc.want[top] {
					t.Errorf("%s = %q, want %q (from %s)", tc.key, v, tc.want[top], names[len(names)-1])
				}
			})
		}
	}
	for _, s := range settings {
		if !covered[s.key()] {
			t.Errorf("no precedence case for %s", s.key())
		}
	}
}

// TestProxyDockerHostNotFromDockerHost: DOCKER_HOST names the watched
// engine; the proxy containers' engine stays the watched one unless
// proxy_docker_host says otherwise.
func TestProxyDockerHostNotFromDockerHost(t *testing.T) {
	got, err := Load(nil, []string{"DOCKER_HOST=tcp://127.0.0.1:2376"})
	if err != nil {
		t.Fatal(err)
	}
	if got.DockerHost != "tcp://127.0.0.1:2376" || got.ProxyDockerHost != "" {
		t.Errorf("docker_host = %q, proxy_docker_host = %q; want DOCKER_HOST's and empty", got.DockerHost, got.ProxyDockerHost)
	}
}

func TestConfigFileChoice(t *testing.T) {
	flagFile := writeTOML(t, `proxy = "nginx"`)
	envFile := writeTOML(t, `proxy = "haproxy"`)
	for _, tc := range []struct {
		name      string
		args      []string
		environ   []string
		wantProxy string
		wantFile  string
	}{
		{name: "flag", args: []string{"--config", flagFile}, wantProxy: "nginx", wantFile: flagFile},
		{name: "single dash flag", args: []string{"-config=" + flagFile}, wantProxy: "nginx", wantFile: flagFile},
		{name: "env", environ: []string{"INTERLOCK_CONFIG=" + envFile}, wantProxy: "haproxy", wantFile: envFile},
		{
			name: "flag beats env", args: []string{"--config", flagFile}, environ: []string{"INTERLOCK_CONFIG=" + envFile},
			wantProxy: "nginx", wantFile: flagFile,
		},
		{
			name: "empty flag means no file", args: []string{"--config="}, environ: []string{"INTERLOCK_CONFIG=" + envFile},
			wantProxy: "builtin", wantFile: "",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Load(tc.args, tc.environ)
			if err != nil {
				t.Fatal(err)
			}
			if got.Proxy != tc.wantProxy || got.File != tc.wantFile {
				t.Errorf("Proxy, File = %q, %q; want %q, %q", got.Proxy, got.File, tc.wantProxy, tc.wantFile)
			}
		})
	}
}

func TestDockerCertPath(t *testing.T) {
	docker, other := certDir(t), certDir(t)
	for _, tc := range []struct {
		name                      string
		file                      string
		args                      []string
		environ                   []string
		wantCA, wantCert, wantKey string
	}{
		{
			name:    "sets all three",
			environ: []string{"DOCKER_CERT_PATH=" + docker},
			wantCA:  filepath.Join(docker, "ca.pem"), wantCert: filepath.Join(docker, "cert.pem"), wantKey: filepath.Join(docker, "key.pem"),
		},
		{
			name:    "flag keeps its own",
			args:    []string{"--tls-ca", filepath.Join(other, "ca.pem")},
			environ: []string{"DOCKER_CERT_PATH=" + docker},
			wantCA:  filepath.Join(other, "ca.pem"), wantCert: filepath.Join(docker, "cert.pem"), wantKey: filepath.Join(docker, "key.pem"),
		},
		{
			name:    "INTERLOCK variable keeps its own",
			environ: []string{"DOCKER_CERT_PATH=" + docker, "INTERLOCK_TLS_KEY=" + filepath.Join(other, "key.pem")},
			wantCA:  filepath.Join(docker, "ca.pem"), wantCert: filepath.Join(docker, "cert.pem"), wantKey: filepath.Join(other, "key.pem"),
		},
		{
			name:    "beats the file",
			file:    "tls_ca = " + strconv.Quote(filepath.Join(other, "ca.pem")),
			environ: []string{"DOCKER_CERT_PATH=" + docker},
			wantCA:  filepath.Join(docker, "ca.pem"), wantCert: filepath.Join(docker, "cert.pem"), wantKey: filepath.Join(docker, "key.pem"),
		},
		{
			name:    "empty is unset",
			file:    "tls_ca = " + strconv.Quote(filepath.Join(other, "ca.pem")),
			environ: []string{"DOCKER_CERT_PATH="},
			wantCA:  filepath.Join(other, "ca.pem"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--config", writeTOML(t, tc.file)}, tc.args...)
			got, err := Load(args, tc.environ)
			if err != nil {
				t.Fatal(err)
			}
			if got.TLSCA != tc.wantCA || got.TLSCert != tc.wantCert || got.TLSKey != tc.wantKey {
				t.Errorf("TLS files = %q, %q, %q\nwant %q, %q, %q",
					got.TLSCA, got.TLSCert, got.TLSKey, tc.wantCA, tc.wantCert, tc.wantKey)
			}
		})
	}
}

func TestDockerTLSVerify(t *testing.T) {
	for _, tc := range []struct {
		name  string
		file  string
		value string
		want  bool
	}{
		{name: "1", value: "1", want: true},
		{name: "true", value: "true", want: true},
		{name: "any other value", value: "yes", want: true},
		{name: "0", value: "0", want: false},
		{name: "false", value: "false", want: false},
		{name: "FALSE", value: "FALSE", want: false},
		{name: "empty", value: "", want: false},
		{name: "0 does not turn the file off", file: "tls_verify = true", value: "0", want: true},
		{name: "empty does not turn the file off", file: "tls_verify = true", value: "", want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"--config", writeTOML(t, tc.file)}
			environ := []string{"DOCKER_HOST=tcp://127.0.0.1:2376", "DOCKER_TLS_VERIFY=" + tc.value}
			got, err := Load(args, environ)
			if err != nil {
				t.Fatal(err)
			}
			if got.TLSVerify != tc.want {
				t.Errorf("TLSVerify = %v, want %v", got.TLSVerify, tc.want)
			}
		})
	}
}

func TestEnvValues(t *testing.T) {
	for _, tc := range []struct {
		name    string
		file    string
		environ []string
		key     string
		want    string
	}{
		{name: "bool 1", environ: []string{"DOCKER_HOST=tcp://h:2376", "INTERLOCK_TLS_VERIFY=1"}, key: "tls_verify", want: "true"},
		{name: "bool true", environ: []string{"DOCKER_HOST=tcp://h:2376", "INTERLOCK_TLS_VERIFY=true"}, key: "tls_verify", want: "true"},
		{name: "bool 0", file: "tls_verify = true\ndocker_host = \"tcp://h:2376\"", environ: []string{"INTERLOCK_TLS_VERIFY=0"}, key: "tls_verify", want: "false"},
		{name: "bool false", file: "tls_verify = true\ndocker_host = \"tcp://h:2376\"", environ: []string{"INTERLOCK_TLS_VERIFY=false"}, key: "tls_verify", want: "false"},
		{name: "set but empty counts", file: `network = "edge"`, environ: []string{"INTERLOCK_NETWORK="}, key: "network", want: ""},
		{name: "later entry wins", environ: []string{"INTERLOCK_PROXY=nginx", "INTERLOCK_PROXY=haproxy"}, key: "proxy", want: "haproxy"},
		{name: "value with =", environ: []string{"INTERLOCK_NETWORK=a=b", "INTERLOCK_NETWORK=edge"}, key: "network", want: "edge"},
		{name: "duration", environ: []string{"INTERLOCK_RESYNC_INTERVAL=1h2m"}, key: "resync_interval", want: "1h2m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Load([]string{"--config", writeTOML(t, tc.file)}, tc.environ)
			if err != nil {
				t.Fatal(err)
			}
			if v := plain(mustSetting(t, tc.key), &got); v != tc.want {
				t.Errorf("%s = %q, want %q", tc.key, v, tc.want)
			}
		})
	}
}

func TestBadFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{name: "unknown", args: []string{"--colour=blue"}, want: []string{"flag provided but not defined: -colour", "interlock run -h"}},
		{name: "typo", args: []string{"--dockerhost=unix:///x.sock"}, want: []string{"-dockerhost", "did you mean --docker-host?"}},
		{name: "underscore", args: []string{"--http_addr=:80"}, want: []string{"did you mean --http-addr?"}},
		{name: "config typo", args: []string{"--conifg=x.toml"}, want: []string{"did you mean --config?"}},
		{name: "proxy", args: []string{"--proxy=squid"}, want: []string{"--proxy:", `"squid"`, "builtin, nginx or haproxy"}},
		{name: "duration syntax", args: []string{"--resync-interval=soon"}, want: []string{"-resync-interval", `"soon" is not a duration`, `"30s"`}},
		{name: "duration minimum", args: []string{"--resync-interval=10ms"}, want: []string{"--resync-interval:", "at least 1s"}},
		{name: "bool", args: []string{"--tls-verify=maybe"}, want: []string{"-tls-verify", `"maybe"`}},
		{name: "positional", args: []string{"--proxy=nginx", "extra"}, want: []string{`unexpected argument "extra"`}},
		{name: "http addr", args: []string{"--http-addr=localhost"}, want: []string{"--http-addr:", "host:port", `"[::1]:8081"`}},
		{name: "api addr port", args: []string{"--api-addr=:65536"}, want: []string{"--api-addr:", "0 to 65535"}},
		{name: "backend address", args: []string{"--backend-address=[::1]"}, want: []string{"--backend-address:", "neither an IP address nor a host name"}},
		{name: "network", args: []string{"--network=a/b"}, want: []string{"--network:", "Docker network name"}},
		{name: "docker host", args: []string{"--docker-host=ssh://me@host"}, want: []string{"--docker-host:", "ssh:// is not supported"}},
		{name: "proxy docker host", args: []string{"--proxy-docker-host=http://127.0.0.1:2375"}, want: []string{"--proxy-docker-host:", "use tcp://HOST:PORT instead of http://"}},
		{name: "proxy docker host list", args: []string{"--proxy-docker-host=unix:///a.sock,unix:///b.sock"}, want: []string{"--proxy-docker-host:", "is a list"}},
		{name: "missing config", args: []string{"--config=/nonexistent/interlock.toml"}, want: []string{"--config:", "/nonexistent/interlock.toml", "no such file"}},
		{name: "verify on a socket", args: []string{"--tls-verify"}, want: []string{"--tls-verify is on", "docker_host is", "unix://"}},
		{name: "cert without key", args: []string{"--tls-cert=" + filepath.Join("testdata", "certs", "cert.pem")}, want: []string{"--tls-cert is set but --tls-key is not"}},
		{name: "key without cert", args: []string{"--tls-key=" + filepath.Join("testdata", "certs", "key.pem")}, want: []string{"--tls-key is set but --tls-cert is not"}},
		{name: "unreadable ca", args: []string{"--tls-ca=/nonexistent/ca.pem"}, want: []string{"--tls-ca:", "/nonexistent/ca.pem", "no such file"}},
		{name: "stats addr everywhere", args: []string{"--stats-addr=:8404"}, want: []string{"--stats-addr:", `":8404" is not a loopback address`}},
		{name: "haproxy port 0", args: []string{"--proxy=haproxy", "--tcp-addr=127.0.0.1:0"}, want: []string{"--tcp-addr:", "haproxy needs a fixed port"}},
		{
			name: "every problem at once",
			args: []string{"--proxy=squid", "--log-level=loud", "--log-format=xml", "--http-addr=:1", "--api-addr=:1"},
			want: []string{"--proxy:", "--log-level:", "--log-format:", "--http-addr and --api-addr are both"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Load(tc.args, nil)
			wantErr(t, err, tc.want...)
			if got != (Config{}) {
				t.Errorf("Load returned %v with its error, want the zero Config", got)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "-help"} {
		t.Run(arg, func(t *testing.T) {
			_, err := Load([]string{arg}, nil)
			if !errors.Is(err, flag.ErrHelp) {
				t.Errorf("Load(%s) error = %v, want flag.ErrHelp", arg, err)
			}
		})
	}
}

func TestBadEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		environ []string
		want    []string
	}{
		{name: "proxy", environ: []string{"INTERLOCK_PROXY=squid"}, want: []string{"INTERLOCK_PROXY:", `"squid"`, "builtin, nginx or haproxy"}},
		{name: "empty proxy", environ: []string{"INTERLOCK_PROXY="}, want: []string{"INTERLOCK_PROXY:", `unknown value ""`}},
		{name: "typo", environ: []string{"INTERLOCK_DOCKERHOST=unix:///x.sock"}, want: []string{"unknown environment variable INTERLOCK_DOCKERHOST", "did you mean INTERLOCK_DOCKER_HOST?"}},
		{name: "unknown", environ: []string{"INTERLOCK_COLOUR=blue"}, want: []string{"unknown environment variable INTERLOCK_COLOUR", "unset it"}},
		{name: "bool yes", environ: []string{"INTERLOCK_TLS_VERIFY=yes"}, want: []string{"INTERLOCK_TLS_VERIFY:", `"yes" is not a boolean`, "true, false, 1 or 0"}},
		{name: "bool TRUE", environ: []string{"INTERLOCK_TLS_VERIFY=TRUE"}, want: []string{"INTERLOCK_TLS_VERIFY:", "true, false, 1 or 0"}},
		{name: "duration without unit", environ: []string{"INTERLOCK_RESYNC_INTERVAL=30"}, want: []string{"INTERLOCK_RESYNC_INTERVAL:", `"30" is not a duration`}},
		{name: "duration minimum", environ: []string{"INTERLOCK_RESYNC_INTERVAL=999ms"}, want: []string{"INTERLOCK_RESYNC_INTERVAL:", "999ms is too short", "at least 1s"}},
		{name: "missing config", environ: []string{"INTERLOCK_CONFIG=/nonexistent/interlock.toml"}, want: []string{"INTERLOCK_CONFIG:", "/nonexistent/interlock.toml"}},
		{name: "cert without key", environ: []string{"INTERLOCK_TLS_CERT=" + filepath.Join("testdata", "certs", "cert.pem")}, want: []string{"INTERLOCK_TLS_CERT is set but INTERLOCK_TLS_KEY is not"}},
		{name: "docker host ssh", environ: []string{"DOCKER_HOST=ssh://me@host"}, want: []string{"DOCKER_HOST:", "ssh:// is not supported"}},
		{name: "docker host tcp without port", environ: []string{"DOCKER_HOST=tcp://host"}, want: []string{"DOCKER_HOST:", "tcp://HOST:PORT"}},
		{name: "docker cert path missing", environ: []string{"DOCKER_CERT_PATH=/nonexistent"}, want: []string{"tls_ca from DOCKER_CERT_PATH:", "/nonexistent/ca.pem", "tls_cert from DOCKER_CERT_PATH:", "/nonexistent/cert.pem", "/nonexistent/key.pem"}},
		{name: "docker verify on a socket", environ: []string{"DOCKER_TLS_VERIFY=1"}, want: []string{"DOCKER_TLS_VERIFY is on but docker_host is"}},
		{name: "drain minimum", environ: []string{"INTERLOCK_DRAIN_TIMEOUT=10ms"}, want: []string{"INTERLOCK_DRAIN_TIMEOUT:", "10ms is too short", "at least 1s"}},
		{
			name:    "every problem at once",
			environ: []string{"INTERLOCK_COLOUR=blue", "INTERLOCK_TLS_VERIFY=yes", "INTERLOCK_PROXY=squid", "INTERLOCK_HTTP_ADDR=80"},
			want:    []string{"INTERLOCK_COLOUR", "INTERLOCK_TLS_VERIFY:", "INTERLOCK_PROXY:", "INTERLOCK_HTTP_ADDR:"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Load(nil, tc.environ)
			wantErr(t, err, tc.want...)
			if got != (Config{}) {
				t.Errorf("Load returned %v with its error, want the zero Config", got)
			}
		})
	}
}

// TestErrorNamesSource checks that one bad value is reported under the name
// of whichever source gave it.
func TestErrorNamesSource(t *testing.T) {
	path := writeTOML(t, `proxy = "squid"`)
	for _, tc := range []struct {
		name    string
		args    []string
		environ []string
		want    string
		notWant []string
	}{
		{name: "file", args: []string{"--config", path}, want: "proxy in " + path + ": "},
		{name: "env over file", args: []string{"--config", path}, environ: []string{"INTERLOCK_PROXY=squid"}, want: "INTERLOCK_PROXY: ", notWant: []string{" in " + path}},
		{name: "flag over env", environ: []string{"INTERLOCK_PROXY=squid"}, args: []string{"--proxy=squid"}, want: "--proxy: ", notWant: []string{"INTERLOCK_PROXY"}},
		{
			name: "good flag hides bad env", environ: []string{"INTERLOCK_PROXY=squid"}, args: []string{"--proxy=nginx", "--log-level=loud"},
			want: "--log-level: ", notWant: []string{"INTERLOCK_PROXY", "proxy"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.args, tc.environ)
			wantErr(t, err, tc.want)
			for _, nw := range tc.notWant {
				if strings.Contains(err.Error(), nw) {
					t.Errorf("error contains %q:\n%v", nw, err)
				}
			}
		})
	}
	t.Run("good flag overrides bad file", func(t *testing.T) {
		got, err := Load([]string{"--config", path, "--proxy=nginx"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got.Proxy != ProxyNginx {
			t.Errorf("Proxy = %q, want nginx", got.Proxy)
		}
	})
}

func TestFlagSet(t *testing.T) {
	c := Default()
	fs := c.FlagSet()
	if fs.Name() != "run" {
		t.Errorf("Name() = %q, want run", fs.Name())
	}
	var out strings.Builder
	fs.SetOutput(&out)
	fs.Usage()
	for _, s := range append([]setting{{flag: flagConfig}}, settings...) {
		if fs.Lookup(s.flag) == nil {
			t.Errorf("no flag -%s", s.flag)
		}
		if !strings.Contains(out.String(), "-"+s.flag+" ") && !strings.Contains(out.String(), "-"+s.flag+"\n") {
			t.Errorf("usage does not show -%s:\n%s", s.flag, out.String())
		}
	}
	for _, want := range []string{"Usage: interlock run", `(default "unix:///var/run/docker.sock")`, "(default 30s)", "-resync-interval DURATION"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage does not contain %q:\n%s", want, out.String())
		}
	}

	// Bound to c: parsing writes through.
	if err := fs.Parse([]string{"--proxy=nginx", "--resync-interval=5s", "--tls-verify", "--config=x.toml"}); err != nil {
		t.Fatal(err)
	}
	if c.Proxy != ProxyNginx || c.ResyncInterval != 5*time.Second || !c.TLSVerify || c.File != "x.toml" {
		t.Errorf("after Parse: %v", c)
	}
}

func TestSummary(t *testing.T) {
	c := fullWant()
	str := c.String()
	for _, want := range []string{
		`config="testdata/good/full.toml"`,
		`docker_host="tcp://docker.example.com:2376"`,
		`tls_key="testdata/certs/key.pem"`,
		`tls_verify=true`,
		`resync_interval=1m30s`,
		`log_format="json"`,
	} {
		if !strings.Contains(str, want) {
			t.Errorf("String() does not contain %s:\n%s", want, str)
		}
	}

	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("start", "config", c)
	for _, want := range []string{"config.config=testdata/good/full.toml", "config.proxy=haproxy", "config.resync_interval=1m30s", "config.tls_verify=true"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("slog output does not contain %s:\n%s", want, b.String())
		}
	}
	for _, s := range settings {
		if !strings.Contains(str, " "+s.key()+"=") {
			t.Errorf("String() leaves out %s", s.key())
		}
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"docker_host", "tls_ca", "tls_cert", "tls_key", "proxy", "http_addr", "api_addr"}
	for _, tc := range []struct {
		name   string
		in     string
		want   string
		wantOK bool
	}{
		{name: "transposition", in: "dokcer_host", want: "docker_host", wantOK: true},
		{name: "deletion", in: "dockerhost", want: "docker_host", wantOK: true},
		{name: "case", in: "PROXY", want: "proxy", wantOK: true},
		{name: "dash", in: "http-addr", want: "http_addr", wantOK: true},
		{name: "two edits", in: "proxxyy", want: "proxy", wantOK: true},
		{name: "nearest of several", in: "tls_cat", want: "tls_ca", wantOK: true},
		{name: "tie", in: "tls_k", wantOK: false}, // tls_ca and tls_key, 2 each
		{name: "too far", in: "colour", wantOK: false},
		{name: "empty", in: "", wantOK: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := suggest(tc.in, known)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("suggest(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{a: "", b: "", want: 0},
		{a: "", b: "abc", want: 3},
		{a: "abc", b: "", want: 3},
		{a: "abc", b: "abc", want: 0},
		{a: "abc", b: "acb", want: 1},
		{a: "kitten", b: "sitting", want: 3},
		{a: "ca", b: "abc", want: 3}, // OSA, not unrestricted Damerau (2)
	} {
		t.Run(tc.a+"_"+tc.b, func(t *testing.T) {
			if got := editDistance(tc.a, tc.b); got != tc.want {
				t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
			}
			if got := editDistance(tc.b, tc.a); got != tc.want {
				t.Errorf("editDistance(%q, %q) = %d, want %d (symmetry)", tc.b, tc.a, got, tc.want)
			}
		})
	}
}
