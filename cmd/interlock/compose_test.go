package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/testenv"
)

// TestBuiltinComposeExample brings up examples/builtin as a user would,
// with the image `make image` builds, and routes its app through it.
func TestBuiltinComposeExample(t *testing.T) {
	e := needDocker(t)
	compose, err := exec.LookPath("docker-compose")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("docker-compose is missing (Debian package docker-compose)")
		}
		t.Skip("docker-compose is missing")
	}
	ctx := context.Background()
	ilImage, err := e.InterlockImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	appImage, err := e.BackendImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sock syscall.Stat_t
	if err := syscall.Stat("/var/run/docker.sock", &sock); err != nil {
		t.Fatal(err)
	}
	httpPort, apiPort := testenv.FreePort(t), testenv.FreePort(t)
	project := "itest-" + e.RunID + "-compose"
	file := filepath.Join("..", "..", "examples", "builtin", "docker-compose.yml")
	env := append(os.Environ(),
		"DOCKER_GID="+strconv.Itoa(int(sock.Gid)), "INTERLOCK_IMAGE="+ilImage, "APP_IMAGE="+appImage,
		"HTTP_PORT="+strconv.Itoa(httpPort), "API_PORT="+strconv.Itoa(apiPort), "NETWORK="+project+"-net")
	run := func(args ...string) ([]byte, error) {
		cmd := exec.Command(compose, append([]string{"-p", project, "-f", file}, args...)...)
		cmd.Env = env
		return cmd.CombinedOutput()
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := run("logs", "--no-color", "interlock")
			t.Logf("interlock logs:\n%s", out)
		}
		if out, err := run("down", "-v", "--remove-orphans"); err != nil {
			t.Errorf("docker-compose down: %v\n%s", err, out)
		}
	})
	if out, err := run("up", "-d", "--scale", "app=2"); err != nil {
		t.Fatalf("docker-compose up: %v\n%s", err, out)
	}
	proxy := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	api := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	testenv.WaitFor(t, 60*time.Second, "both app containers routed", func() error {
		code, body, err := httpGet(api+"/readyz", "")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("readyz %d %v %s", code, err, body)
		}
		if n := backendsOf(routesOf(t, api), "app.example.com"); n != 2 {
			return fmt.Errorf("%d backends", n)
		}
		return nil
	})
	seen := map[string]bool{}
	for range 10 {
		r, err := proxyGet(proxy, "app.example.com", "/")
		if err != nil || r.code != http.StatusOK {
			t.Fatalf("GET app.example.com through the example: %v %d %s", err, r.code, r.body)
		}
		seen[r.backend] = true
	}
	if len(seen) != 2 {
		t.Errorf("answers came from %v, want both app containers", seen)
	}
}
