package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The deployment examples must stay valid compose files.
func TestExamplesAreValidCompose(t *testing.T) {
	compose, err := exec.LookPath("docker-compose")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("docker-compose is missing (Debian package docker-compose)")
		}
		t.Skip("docker-compose is missing")
	}
	files, err := filepath.Glob(filepath.Join("..", "..", "examples", "*", "*.yml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(filepath.Dir(f)), func(t *testing.T) {
			cmd := exec.Command(compose, "-f", f, "config", "-q")
			cmd.Env = append(os.Environ(), "DOCKER_GID=999", "APP_IMAGE=example/app")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("docker-compose config %s: %v\n%s", f, err, out)
			}
		})
	}
}
