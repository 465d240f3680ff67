package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/api"
	"github.com/interlock-proxy/interlock/internal/testenv"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
)

// proxyGet sends GET path with Host host to a proxy base URL.
func proxyGet(base, host, path string) (response, error) {
	in := &instance{proxy: base}
	return in.get(host, path)
}

func routesOf(t *testing.T, apiBase string) api.RoutesResponse {
	t.Helper()
	return (&instance{api: apiBase}).routes(t)
}

func backendsOf(rs api.RoutesResponse, host string) int {
	for _, h := range rs.Hosts {
		if h.Name == host {
			n := 0
			for _, r := range h.Routes {
				n += len(r.Backends)
			}
			return n
		}
	}
	return -1
}

// TestSwarm runs Interlock in a container on an overlay network of a
// one-node Swarm, as production does, and routes services by their
// com.docker.lb.* labels to task IPs.
func TestSwarm(t *testing.T) {
	e := needDocker(t)
	ctx := context.Background()
	created, err := e.EnsureSwarm(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Cleanup(func() {
			if err := e.LeaveSwarm(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	ov := e.Overlay(t)
	il := e.RunInterlock(t, ov)
	waitReady(t, il.API)

	host := hostFor(t, "shop")
	svc := e.Service(t, testenv.ServiceSpec{
		Name: "shop", Replicas: 1, Network: ov,
		Labels: map[string]string{"com.docker.lb.hosts": host, "com.docker.lb.port": "8000"},
		Env:    map[string]string{"DRAIN_DELAY": "2s"}, StopGrace: 10 * time.Second, StartFirst: true,
	})
	waitProxy(t, il.Proxy, host, http.StatusOK, 60*time.Second)

	t.Run("scale 1 to 5 to 1", func(t *testing.T) {
		if err := e.Scale(ctx, svc, 5); err != nil {
			t.Fatal(err)
		}
		scaled := time.Now()
		seen := map[string]bool{}
		testenv.WaitFor(t, 60*time.Second, "all 5 tasks answer through the proxy", func() error {
			r, err := proxyGet(il.Proxy, host, "/")
			if err != nil {
				return err
			}
			if r.code == http.StatusOK {
				seen[r.backend] = true
			}
			if len(seen) < 5 {
				return fmt.Errorf("%d distinct tasks answered: %v", len(seen), seen)
			}
			return nil
		})
		t.Logf("scale 1 -> 5: all new tasks reached %v after the update returned (includes task start-up)", time.Since(scaled).Round(time.Millisecond))
		if err := e.Scale(ctx, svc, 1); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 60*time.Second, "back to one backend", func() error {
			if n := backendsOf(routesOf(t, il.API), host); n != 1 {
				return fmt.Errorf("%d backends", n)
			}
			return nil
		})
	})

	t.Run("rolling update under load loses nothing", func(t *testing.T) {
		if err := e.Scale(ctx, svc, 2); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 60*time.Second, "two backends", func() error {
			if n := backendsOf(routesOf(t, il.API), host); n != 2 {
				return fmt.Errorf("%d backends", n)
			}
			return nil
		})
		l := startLoad(4, func() (response, error) {
			time.Sleep(5 * time.Millisecond)
			return proxyGet(il.Proxy, host, "/")
		})
		began := time.Now()
		if err := e.UpdateService(ctx, svc, func(s *swarm.ServiceSpec) {
			s.TaskTemplate.ContainerSpec.Env = append(s.TaskTemplate.ContainerSpec.Env, "VERSION=2")
		}); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 120*time.Second, "rolling update completed", func() error {
			res, err := e.Client.ServiceInspect(ctx, svc, swarmInspect)
			if err != nil {
				return err
			}
			if us := res.Service.UpdateStatus; us == nil || us.State != swarm.UpdateStateCompleted {
				return fmt.Errorf("update status %+v", us)
			}
			return nil
		})
		took := time.Since(began)
		time.Sleep(3 * time.Second) // the last old task drains and dies meanwhile
		total, failed, first := l.Stop()
		t.Logf("rolling update of 2 tasks (start-first): %v; %d requests, %d failed", took.Round(time.Millisecond), total, failed)
		if failed > 0 {
			t.Errorf("%d of %d requests failed during the rolling update; first: %v", failed, total, first)
		}
	})

	t.Run("bad labels are reported per service", func(t *testing.T) {
		e.Service(t, testenv.ServiceSpec{
			Name: "bad", Replicas: 1, Network: ov,
			Labels: map[string]string{"com.docker.lb.hosts": hostFor(t, "bad"), "com.docker.lb.port": "eighty"},
		})
		testenv.WaitFor(t, 30*time.Second, "bad service reported", func() error {
			for _, p := range routesOf(t, il.API).LeftOut {
				if p.Kind == "service" && p.Label == "com.docker.lb.port" && strings.HasSuffix(p.Name, "bad") {
					return nil
				}
			}
			return fmt.Errorf("not reported: %+v", routesOf(t, il.API).LeftOut)
		})
		if r, err := proxyGet(il.Proxy, host, "/"); err != nil || r.code != http.StatusOK {
			t.Errorf("the good service while a bad one is around: %v %d", err, r.code)
		}
	})

	t.Run("ssl passthrough", func(t *testing.T) {
		// The tasks terminate TLS themselves, with certificates of their
		// own: the client must see theirs, not the proxy's.
		pass := hostFor(t, "pass")
		e.Service(t, testenv.ServiceSpec{
			Name: "pass", Replicas: 2, Network: ov,
			Labels: map[string]string{"com.docker.lb.hosts": pass, "com.docker.lb.port": "8443", "com.docker.lb.ssl_passthrough": "true"},
			Env:    map[string]string{"TLS_PORTS": "8443", "TLS_NAME": pass},
		})
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, il.HTTPS)
			},
			// The tasks' certificates are self-signed; what is checked is
			// whose they are.
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
			DisableKeepAlives: true,
		}}
		seen := map[string]bool{}
		testenv.WaitFor(t, 60*time.Second, "both tasks answer over TLS of their own", func() error {
			res, err := hc.Get("https://" + pass + "/")
			if err != nil {
				return err
			}
			defer res.Body.Close()
			if leaf := res.TLS.PeerCertificates[0]; len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != pass || leaf.Issuer.CommonName != pass {
				return fmt.Errorf("certificate for %v issued by %q: not the task's own", leaf.DNSNames, leaf.Issuer.CommonName)
			}
			if res.StatusCode != http.StatusOK {
				return fmt.Errorf("status %d", res.StatusCode)
			}
			seen[res.Header.Get("X-Backend")] = true
			if len(seen) < 2 {
				return fmt.Errorf("tasks that answered: %v", seen)
			}
			return nil
		})
		// Plain HTTP to it is sent to HTTPS: its tasks speak only TLS.
		noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		req, _ := http.NewRequest(http.MethodGet, il.Proxy+"/x", nil)
		req.Host = pass
		res, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMovedPermanently || !strings.HasPrefix(res.Header.Get("Location"), "https://"+pass+":8443/x") {
			t.Errorf("plain GET to the passthrough host: %d Location %q", res.StatusCode, res.Header.Get("Location"))
		}
	})

	t.Run("certificates from docker secrets", func(t *testing.T) {
		// Interlock as a service, given the service's certificate and key as
		// secrets; --cert-dir /run/secrets makes the labels name them.
		secure := hostFor(t, "secure")
		certPEM, keyPEM, roots := issueHostCert(t, secure)
		svc := e.InterlockService(t, testenv.InterlockServiceSpec{Network: ov,
			Secrets: map[string][]byte{"secure.crt": certPEM, "secure.key": keyPEM},
			Args:    []string{"--cert-dir", "/run/secrets"}})
		waitReady(t, svc.API)
		e.Service(t, testenv.ServiceSpec{Name: "secure", Replicas: 1, Network: ov,
			Labels: map[string]string{"com.docker.lb.hosts": secure, "com.docker.lb.port": "8000",
				"com.docker.lb.ssl_cert": "secure.crt", "com.docker.lb.ssl_key": "secure.key"}})
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, svc.HTTPS)
			},
			TLSClientConfig:   &tls.Config{RootCAs: roots},
			DisableKeepAlives: true,
		}}
		testenv.WaitFor(t, 60*time.Second, "the service over HTTPS with the certificate from the secret", func() error {
			res, err := hc.Get("https://" + secure + "/")
			if err != nil {
				return err
			}
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				return fmt.Errorf("status %d", res.StatusCode)
			}
			return nil
		})
	})

	t.Run("two instances converge on the same table", func(t *testing.T) {
		other := e.RunInterlock(t, ov)
		waitReady(t, other.API)
		testenv.WaitFor(t, 30*time.Second, "same hash on both", func() error {
			a, b := routesOf(t, il.API), routesOf(t, other.API)
			if a.Hash == "" || a.Hash != b.Hash {
				return fmt.Errorf("hashes %s and %s", a.Hash, b.Hash)
			}
			return nil
		})
	})

	t.Run("removed service leaves the table", func(t *testing.T) {
		if _, err := e.Client.ServiceRemove(ctx, svc, serviceRemove); err != nil {
			t.Fatal(err)
		}
		waitProxy(t, il.Proxy, host, http.StatusNotFound, 30*time.Second)
	})
}

func waitReady(t *testing.T, apiBase string) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, "interlock in its container ready", func() error {
		code, body, err := httpGet(apiBase+"/readyz", "")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("%d %s", code, body)
		}
		return err
	})
}

func waitProxy(t *testing.T, base, host string, code int, within time.Duration) {
	t.Helper()
	testenv.WaitFor(t, within, fmt.Sprintf("%s answers %d", host, code), func() error {
		r, err := proxyGet(base, host, "/")
		if err != nil {
			return err
		}
		if r.code != code {
			return fmt.Errorf("got %d: %s", r.code, strings.TrimSpace(r.body))
		}
		return nil
	})
}

var (
	swarmInspect  = client.ServiceInspectOptions{}
	serviceRemove = client.ServiceRemoveOptions{}
)
