package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBadConfigs loads each file under testdata/bad and checks its error.
// Every file there must have a row, and every row a file.
func TestBadConfigs(t *testing.T) {
	bad := func(name string) string { return filepath.Join("testdata", "bad", name) }
	certs := filepath.Join("testdata", "certs")
	tests := []struct {
		file string
		want []string
	}{
		{file: "syntax.toml", want: []string{bad("syntax.toml") + ":1:15: invalid TOML", "newlines"}},
		{file: "duplicate_key.toml", want: []string{bad("duplicate_key.toml") + ":2:", "invalid TOML", "'proxy' has already been defined"}},
		{file: "unknown_key.toml", want: []string{`unknown key "dokcer_host"`, `did you mean "docker_host"?`}},
		{file: "unknown_far.toml", want: []string{`unknown key "colour"`, "interlock run -h"}},
		{file: "unknown_case.toml", want: []string{`unknown key "PROXY"`, `did you mean "proxy"?`}},
		{file: "unknown_dash.toml", want: []string{`unknown key "http-addr"`, `did you mean "http_addr"?`}},
		{file: "unknown_table.toml", want: []string{`unknown table "docker"`, "the file is flat"}},
		{file: "config_key.toml", want: []string{`unknown key "config"`, "use --config or INTERLOCK_CONFIG"}},
		{file: "proxy.toml", want: []string{"proxy in " + bad("proxy.toml") + ": ", `unknown value "squid"`, "want builtin, nginx or haproxy"}},
		{file: "proxy_type.toml", want: []string{"proxy in ", "want a string, got integer 1"}},
		{file: "proxy_case.toml", want: []string{"proxy in ", `unknown value "NGINX"`}},
		{file: "http_addr_noport.toml", want: []string{"http_addr in ", `"8080" is not host:port`, `":8080", "127.0.0.1:8081" or "[::1]:8081"`}},
		{file: "http_addr_port.toml", want: []string{"http_addr in ", `port "99999" is not a number from 0 to 65535`}},
		{file: "api_addr_host.toml", want: []string{"api_addr in ", `"not a host" is neither an IP address nor a host name`}},
		{file: "api_addr_ipv6.toml", want: []string{"api_addr in ", `"::1:8081" is not host:port`, `"[::1]:8081"`}},
		{file: "same_addr.toml", want: []string{"http_addr and api_addr in " + bad("same_addr.toml"), `both "127.0.0.1:9000"`}},
		{file: "docker_host_noscheme.toml", want: []string{"docker_host in ", "has no scheme", "unix://PATH, tcp://HOST:PORT or npipe://PATH"}},
		{file: "docker_host_scheme.toml", want: []string{"docker_host in ", "use tcp://HOST:PORT instead of http://"}},
		{file: "docker_host_ssh.toml", want: []string{"docker_host in ", "ssh:// is not supported", "unix:///tmp/docker.sock"}},
		{file: "docker_host_tcp_noport.toml", want: []string{"docker_host in ", "is not tcp://HOST:PORT"}},
		{file: "docker_host_tcp_port.toml", want: []string{"docker_host in ", `port "0" is not a number from 1 to 65535`}},
		{file: "docker_host_list_mixed.toml", want: []string{"docker_host in ", "mixes tcp:// and unix://"}},
		{file: "docker_host_list_empty.toml", want: []string{"docker_host in ", "has an empty entry"}},
		{file: "docker_host_list_twice.toml", want: []string{"docker_host in ", "names tcp://10.0.0.1:2376 twice"}},
		{file: "docker_host_unix_empty.toml", want: []string{"docker_host in ", "has no socket path"}},
		{file: "tls_cert_without_key.toml", want: []string{"tls_cert in " + bad("tls_cert_without_key.toml") + " is set but tls_key is not", "set both or neither"}},
		{file: "tls_key_without_cert.toml", want: []string{"tls_key in " + bad("tls_key_without_cert.toml") + " is set but tls_cert is not"}},
		{file: "tls_ca_missing.toml", want: []string{"tls_ca in ", bad("missing-ca.pem"), "no such file or directory"}},
		{file: "tls_ca_dir.toml", want: []string{"tls_ca in ", certs + " is not a regular file"}},
		{file: "tls_ca_not_pem.toml", want: []string{"tls_ca in ", bad("tls_ca_not_pem.toml") + " holds no PEM certificate"}},
		{file: "tls_pair_mismatch.toml", want: []string{"tls_cert and tls_key in ", filepath.Join(certs, "other-key.pem"), "private key does not match public key"}},
		{file: "tls_verify_unix.toml", want: []string{"tls_verify in ", `is on but docker_host is "unix:///var/run/docker.sock"`, "tcp://HOST:PORT"}},
		{file: "tls_verify_string.toml", want: []string{"tls_verify in ", `want true or false (unquoted), got string "yes"`}},
		{file: "resync_short.toml", want: []string{"resync_interval in ", "500ms is too short; want at least 1s"}},
		{file: "resync_integer.toml", want: []string{"resync_interval in ", `want a duration string such as "30s", got integer 30`}},
		{file: "resync_bad.toml", want: []string{"resync_interval in ", `"30 seconds" is not a duration`}},
		{file: "log_level.toml", want: []string{"log_level in ", `unknown value "verbose"`, "debug, info, warn or error"}},
		{file: "log_format.toml", want: []string{"log_format in ", `unknown value "logfmt"`, "text or json"}},
		{file: "backend_address_port.toml", want: []string{"backend_address in ", "neither an IP address nor a host name (no port"}},
		{file: "backend_address_wildcard.toml", want: []string{"backend_address in ", "wildcard address"}},
		{file: "backend_address_empty.toml", want: []string{"backend_address in ", "is empty"}},
		{file: "backend_address_bad_ip.toml", want: []string{"backend_address in ", `"10.0.0.256" is neither`}},
		{file: "network.toml", want: []string{"network in ", `"-edge" is not a Docker network name`}},
		{file: "network_space.toml", want: []string{"network in ", `"my net" is not a Docker network name`}},
		{file: "tls_profile.toml", want: []string{"tls_profile in ", `unknown TLS profile "paranoid"`, "modern, intermediate, old"}},
		{file: "tls_ciphers.toml", want: []string{"tls_ciphers in ", `unknown cipher "ALL"`}},
		{file: "tls_protocols.toml", want: []string{"tls_protocols in ", `unknown protocol "SSLv3"`}},
		{file: "template_missing.toml", want: []string{"template in ", bad("missing.tmpl"), "no such file or directory"}},
		{file: "reload_quiet_long.toml", want: []string{"reload_quiet and reload_max_wait in ", "quiet period 3s is longer than the maximum wait 1s"}},
		{file: "nginx_target.toml", want: []string{"nginx_target in ", `unknown value "remote"`, "local or containers"}},
		{file: "haproxy_target.toml", want: []string{"haproxy_target in ", `unknown value "docker"`, "local or containers"}},
		{file: "nginx_delivery.toml", want: []string{"nginx_delivery in ", `unknown value "rsync"`, "copy or volume"}},
		{file: "proxy_container_label.toml", want: []string{"proxy_container_label in ", `"-x y" is not a label value`}},
		{file: "proxy_docker_host_list.toml", want: []string{"proxy_docker_host in ", "is a list; want the one engine where the proxy containers run"}},
		{file: "proxy_docker_host_noscheme.toml", want: []string{"proxy_docker_host in ", `"10.0.0.1:2376" has no scheme`}},
		{file: "nginx_port_zero.toml", want: []string{"http_addr in ", "nginx needs a fixed port"}},
		{file: "https_same_addr.toml", want: []string{"http_addr and https_addr in ", `both ":8080"`}},
		{file: "nginx_container_config.toml", want: []string{"nginx_container_config in ", "not an absolute path"}},
		{file: "nginx_pid_containers.toml", want: []string{"nginx_pid_file and nginx_target in ", "the target is containers"}},
		{file: "haproxy_binary.toml", want: []string{"haproxy_binary in ", "is empty; want the haproxy executable"}},
		{file: "tcp_addr.toml", want: []string{"tcp_addr in ", `"8443" is not host:port`}},
		{file: "stats_addr.toml", want: []string{"stats_addr in ", `"8404" is not host:port`}},
		{file: "stats_addr_public.toml", want: []string{"stats_addr in ", `"0.0.0.0:8404" is not a loopback address`, "bind it to 127.0.0.1 or [::1]"}},
		{file: "drain_timeout_short.toml", want: []string{"drain_timeout in ", "500ms is too short; want at least 1s"}},
		{file: "hsts_negative.toml", want: []string{"hsts_max_age in ", "-1h0m0s is out of range", "0 (no HSTS header) or at least 1s"}},
		{file: "hsts_short.toml", want: []string{"hsts_max_age in ", "500ms is out of range"}},
		{file: "proxy_protocol_cidr.toml", want: []string{"proxy_protocol_trusted_ips in ", `"10.0.0.0/33" is not a CIDR prefix`, `"10.0.0.0/8"`}},
		{file: "proxy_protocol_host_bits.toml", want: []string{"proxy_protocol_trusted_ips in ", `"10.0.0.1/8" has bits set after its prefix length; did you mean "10.0.0.0/8"?`}},
		{file: "forwarded_empty_entry.toml", want: []string{"forwarded_headers_trusted_ips in ", "has an empty entry", "separated by commas"}},
		{file: "forwarded_not_ip.toml", want: []string{"forwarded_headers_trusted_ips in ", `"localhost" is neither a CIDR prefix nor an IP address`}},
		{file: "access_log_format.toml", want: []string{"access_log_format in ", `unknown value "combined"`, "common or json"}},
		{file: "builtin_engine.toml", want: []string{"builtin_engine in ", `unknown value "gnet"`, "nethttp or fasthttp"}},
		{file: "client_read_header_negative.toml", want: []string{"client_read_header_timeout in ", "-1s is negative", "or 0 for no limit"}},
		{file: "backend_connect_zero.toml", want: []string{"backend_connect_timeout in ", "is 0; want more than 0"}},
		{file: "max_header_bytes_small.toml", want: []string{"max_header_bytes in ", "512 is out of range; want 1KiB to 64MiB", `"1MiB"`}},
		{file: "max_header_bytes_unit.toml", want: []string{"max_header_bytes in ", `"10MB" is not a size`, "B, KiB, MiB or GiB"}},
		{file: "max_body_bytes_negative.toml", want: []string{"max_body_bytes in ", "-1 is negative"}},
		{file: "max_body_bytes_float.toml", want: []string{"max_body_bytes in ", "want a size: an integer (bytes) or a string", "got float 1.5"}},
		{file: "acme_hosts.toml", want: []string{"acme_hosts in ", `unknown value "some"`, "off, labelled or all"}},
		{file: "acme_email.toml", want: []string{"acme_email in ", `"ops at example.com" is not an email address`}},
		{file: "acme_ca_http.toml", want: []string{"acme_ca in ", `"http://acme.example.com/directory" is not an https:// URL`}},
		{file: "acme_challenges.toml", want: []string{"acme_challenges in ", `unknown challenge type "dns-01"`, "dns-01 is not supported"}},
		{file: "acme_challenges_twice.toml", want: []string{"acme_challenges in ", "names http-01 twice"}},
		{file: "acme_challenges_nginx.toml", want: []string{"acme_challenges in ", "the nginx driver answers ACME's http-01 challenge only", "add http-01"}},
		{file: "acme_challenge_addr_any.toml", want: []string{"acme_challenge_addr in ", `"0.0.0.0:8082": want a host the proxy can connect to`}},
		{file: "acme_challenge_addr_noport.toml", want: []string{"acme_challenge_addr in ", `"localhost" is not host:port`}},
		{file: "acme_ca_root_not_pem.toml", want: []string{"acme_ca_root in ", bad("acme_ca_root_not_pem.toml") + " holds no PEM certificate"}},
		{file: "acme_port_zero.toml", want: []string{"http_addr in ", `"127.0.0.1:0": ACME's http-01 challenge needs a fixed port, forwarded from port 80`}},
		{file: "acme_https_port_zero.toml", want: []string{"https_addr in ", `":0": ACME's tls-alpn-01 challenge needs a fixed port, forwarded from port 443`}},
		{file: "haproxy_port_zero.toml", want: []string{"stats_addr in ", `"127.0.0.1:0": haproxy needs a fixed port`}},
		{file: "haproxy_tcp_same_addr.toml", want: []string{"http_addr and tcp_addr in ", `both ":8080"`, "give the tcp listener an address of its own"}},
		{file: "haproxy_stats_same_addr.toml", want: []string{"api_addr and stats_addr in ", `both "127.0.0.1:8081"`, "give the stats page an address of its own"}},
		{
			file: "many.toml",
			want: []string{`unknown key "colour"`, "proxy in ", "http_addr in ", "resync_interval in ", "log_level in "},
		},
	}

	files, err := filepath.Glob(bad("*.toml"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for _, tc := range tests {
		rows[tc.file] = true
	}
	for _, f := range files {
		if !rows[filepath.Base(f)] {
			t.Errorf("%s has no row in TestBadConfigs", f)
		}
	}

	for _, tc := range tests {
		t.Run(strings.TrimSuffix(tc.file, ".toml"), func(t *testing.T) {
			path := bad(tc.file)
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("row without a file: %v", err)
			}
			got, err := LoadFile(path)
			// Every error names the file it comes from.
			wantErr(t, err, append([]string{path}, tc.want...)...)
			if got != (Config{}) {
				t.Errorf("LoadFile returned %v with its error, want the zero Config", got)
			}
			// Load reports the same through --config.
			_, err = Load([]string{"--config", path}, nil)
			wantErr(t, err, tc.want...)
		})
	}
}

// TestValidateAll checks that Validate reports every bad setting at once,
// each under its TOML key.
func TestValidateAll(t *testing.T) {
	c := Config{
		DockerHost:     "tcp://",
		TLSCA:          "/nonexistent/ca.pem",
		TLSCert:        "/nonexistent/cert.pem",
		TLSVerify:      true,
		Proxy:          "squid",
		HTTPAddr:       "80",
		APIAddr:        ":http",
		BackendAddress: "*",
		Network:        "_x",
		ResyncInterval: 0,
		LogLevel:       "INFO",
		LogFormat:      "",
	}
	err := c.Validate()
	wantErr(t, err,
		"docker_host: ", "tls_ca: ", "tls_cert: ", "tls_cert is set but tls_key is not",
		"proxy: ", "http_addr: ", `api_addr: ":http": port "http"`, "backend_address: ",
		"network: ", "resync_interval: 0s is too short", "log_level: ", `log_format: unknown value ""`,
	)
	// tls_verify with a broken docker host says nothing of sockets: the
	// docker host error already covers it.
	if strings.Contains(err.Error(), "local socket") {
		t.Errorf("error mentions a socket for a tcp:// docker host:\n%v", err)
	}
	if zero := (Config{}).Validate(); zero == nil {
		t.Error("the zero Config validates; want errors")
	}
}

func TestGoodValues(t *testing.T) {
	certs := filepath.Join("testdata", "certs")
	for _, tc := range []struct {
		name   string
		change func(c *Config)
	}{
		{name: "unix relative socket", change: func(c *Config) { c.DockerHost = "unix://docker.sock" }},
		{name: "npipe", change: func(c *Config) { c.DockerHost = "npipe:////./pipe/docker_engine" }},
		{name: "tcp ipv6", change: func(c *Config) { c.DockerHost = "tcp://[::1]:2376" }},
		{name: "tcp name", change: func(c *Config) { c.DockerHost = "tcp://manager-1.swarm.example:2376" }},
		{name: "tls verify over tcp with system roots", change: func(c *Config) {
			c.DockerHost, c.TLSVerify = "tcp://127.0.0.1:2376", true
		}},
		{name: "client pair without verify", change: func(c *Config) {
			c.DockerHost = "tcp://127.0.0.1:2376"
			c.TLSCert, c.TLSKey = filepath.Join(certs, "cert.pem"), filepath.Join(certs, "key.pem")
		}},
		{name: "ca only", change: func(c *Config) { c.TLSCA = filepath.Join(certs, "ca.pem") }},
		{name: "kernel-chosen ports may repeat", change: func(c *Config) { c.HTTPAddr, c.APIAddr = "127.0.0.1:0", "127.0.0.1:0" }},
		{name: "all interfaces", change: func(c *Config) { c.HTTPAddr = ":80" }},
		{name: "ipv6 zone", change: func(c *Config) { c.APIAddr = "[fe80::1%eth0]:8081" }},
		{name: "host name listen", change: func(c *Config) { c.APIAddr = "localhost:8081" }},
		{name: "port 65535", change: func(c *Config) { c.HTTPAddr = ":65535" }},
		{name: "backend ipv6", change: func(c *Config) { c.BackendAddress = "::1" }},
		{name: "backend host name", change: func(c *Config) { c.BackendAddress = "host.docker.internal" }},
		{name: "backend digit label", change: func(c *Config) { c.BackendAddress = "1password.example" }},
		{name: "network one char", change: func(c *Config) { c.Network = "a" }},
		{name: "network full grammar", change: func(c *Config) { c.Network = "0edge_Net.v-2" }},
		{name: "resync minimum", change: func(c *Config) { c.ResyncInterval = time.Second }},
		{name: "proxy nginx", change: func(c *Config) { c.Proxy = ProxyNginx }},
		{name: "nginx containers volume", change: func(c *Config) {
			c.Proxy, c.NginxTarget, c.NginxDelivery = ProxyNginx, NginxContainers, NginxVolume
		}},
		{name: "nginx pid file", change: func(c *Config) { c.Proxy, c.NginxPidFile = ProxyNginx, "/run/nginx.pid" }},
		{name: "proxy haproxy", change: func(c *Config) { c.Proxy = ProxyHAProxy }},
		{name: "haproxy tcp listener and ipv6 stats", change: func(c *Config) {
			c.Proxy, c.TCPAddr, c.StatsAddr = ProxyHAProxy, ":8444", "[::1]:8404"
		}},
		{name: "acme labelled with pebble", change: func(c *Config) {
			c.ACMEHosts, c.ACMEEmail, c.ACMECA = ACMELabelled, "ops+interlock@mail.example.com", "https://127.0.0.1:14000/dir"
			c.ACMECARoot = filepath.Join(certs, "ca.pem")
		}},
		{name: "acme all, http-01 only, any https port", change: func(c *Config) {
			c.ACMEHosts, c.ACMEChallenges, c.HTTPSAddr = ACMEAll, " http-01 ", "127.0.0.1:0"
		}},
		{name: "acme with nginx: http-01 passed to the responder", change: func(c *Config) {
			c.Proxy, c.ACMEHosts, c.HTTPAddr = ProxyNginx, ACMEAll, ":80"
		}},
		{name: "acme with haproxy: responder on a container address", change: func(c *Config) {
			c.Proxy, c.ACMEHosts, c.ACMEChallenges, c.ACMEChallengeAddr = ProxyHAProxy, ACMELabelled, "http-01", "172.18.0.5:8082"
		}},
		{name: "acme challenge address means nothing to builtin", change: func(c *Config) {
			c.ACMEHosts, c.ACMEChallengeAddr = ACMEAll, ""
		}},
		{name: "haproxy without stats page", change: func(c *Config) { c.Proxy, c.StatsAddr = ProxyHAProxy, "" }},
		{name: "haproxy stats on another loopback address", change: func(c *Config) { c.Proxy, c.StatsAddr = ProxyHAProxy, "127.0.0.2:8404" }},
		{name: "drain minimum", change: func(c *Config) { c.Proxy, c.DrainTimeout = ProxyHAProxy, time.Second }},
		// Settings of the haproxy driver's listeners are not held against
		// the others: a port 0 or an address shared with the API is fine
		// when haproxy does not run.
		{name: "haproxy listeners unused by builtin", change: func(c *Config) {
			c.TCPAddr, c.StatsAddr, c.HTTPAddr = c.HTTPAddr, c.APIAddr, "127.0.0.1:0"
		}},
		{name: "haproxy listeners unused by nginx", change: func(c *Config) {
			c.Proxy, c.TCPAddr, c.StatsAddr = ProxyNginx, "127.0.0.1:0", c.APIAddr
		}},
		{name: "reload at once", change: func(c *Config) { c.ReloadQuiet = 0 }},
		{name: "tls old with own ciphers", change: func(c *Config) {
			c.TLSProfile, c.TLSCiphers, c.TLSProtocols = "old", "AES128-SHA:DES-CBC3-SHA", "TLSv1.2"
		}},
		{name: "warn json", change: func(c *Config) { c.LogLevel, c.LogFormat = "warn", "json" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.change(&c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate() = %v", err)
			}
		})
	}
}

func TestIsHostname(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{in: "localhost", want: true},
		{in: "a.b-c.example", want: true},
		{in: "x1", want: true},
		{in: strings.Repeat("a", 63) + ".example", want: true},
		{in: strings.Repeat("a", 64) + ".example", want: false},
		{in: strings.Repeat("a.", 126) + "ab", want: false}, // 254 bytes
		{in: "", want: false},
		{in: "-a.example", want: false},
		{in: "a-.example", want: false},
		{in: "a..example", want: false},
		{in: "example.", want: false},
		{in: "under_score", want: false},
		{in: "1.2.3.999", want: false},
		{in: "123", want: false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := isHostname(tc.in); got != tc.want {
				t.Errorf("isHostname(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestReadPEMFileRefusesSpecialFiles(t *testing.T) {
	big := filepath.Join(t.TempDir(), "big.pem")
	if err := os.WriteFile(big, make([]byte, maxPEMFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		path string
		want string
	}{
		{name: "device", path: os.DevNull, want: "is not a regular file"},
		{name: "directory", path: t.TempDir(), want: "is not a regular file"},
		{name: "too large", path: big, want: "is larger than"},
		{name: "missing", path: filepath.Join(t.TempDir(), "none.pem"), want: "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readPEMFile(tc.path)
			wantErr(t, err, tc.path, tc.want)
		})
	}
}
