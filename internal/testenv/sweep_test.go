package testenv

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// deadPID returns a pid no process can have: one past the kernel's maximum.
func deadPID(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatalf("read pid_max: %v", err)
	}
	pidMax, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("parse pid_max %q: %v", b, err)
	}
	return pidMax + 1
}

func TestProcessAlive(t *testing.T) {
	for _, tc := range []struct {
		name string
		pid  int
		want bool
	}{
		{name: "self", pid: os.Getpid(), want: true},
		{name: "init", pid: 1, want: true},
		{name: "beyond pid_max", pid: deadPID(t), want: false},
		{name: "zero", pid: 0, want: false},
		{name: "negative", pid: -1, want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := processAlive(tc.pid); got != tc.want {
				t.Errorf("processAlive(%d) = %v, want %v", tc.pid, got, tc.want)
			}
		})
	}
}

// createLabelled makes a container that is never started, with exactly
// these labels, removed at the end of the test if still there.
func createLabelled(t *testing.T, env *Env, name string, labels map[string]string) string {
	t.Helper()
	img, err := env.BackendImage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	res, err := env.Client.ContainerCreate(t.Context(), client.ContainerCreateOptions{
		Name: name, Config: &container.Config{Image: img, Labels: labels},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := env.Remove(ctx, res.ID); err != nil {
			t.Error(err)
		}
	})
	return res.ID
}

func TestNewSweepsObjectsOfDeadProcesses(t *testing.T) {
	env := Require(t)
	ctx := t.Context()
	stale := map[string]string{LabelTest: "1", LabelRun: "crashed" + env.RunID, LabelPID: strconv.Itoa(deadPID(t))}
	live := map[string]string{LabelTest: "1", LabelRun: "parallel" + env.RunID, LabelPID: strconv.Itoa(os.Getpid())}
	noPID := map[string]string{LabelTest: "1", LabelRun: "nopid" + env.RunID}

	staleC := createLabelled(t, env, "itest-"+env.RunID+"-stale", stale)
	noPIDC := createLabelled(t, env, "itest-"+env.RunID+"-nopid", noPID)
	liveC := createLabelled(t, env, "itest-"+env.RunID+"-live", live)
	staleN, err := env.Client.NetworkCreate(ctx, "itest-"+env.RunID+"-stalenet", client.NetworkCreateOptions{Labels: stale})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = env.Client.NetworkRemove(context.Background(), staleN.ID, client.NetworkRemoveOptions{})
	})
	staleV, err := env.Client.VolumeCreate(ctx, client.VolumeCreateOptions{Name: "itest-" + env.RunID + "-stalevol", Labels: stale})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = env.Client.VolumeRemove(context.Background(), staleV.Volume.Name, client.VolumeRemoveOptions{Force: true})
	})

	e2, err := New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()

	for _, id := range []string{staleC, noPIDC} {
		if _, err := env.Client.ContainerInspect(ctx, id, client.ContainerInspectOptions{}); !cerrdefs.IsNotFound(err) {
			t.Errorf("stale container %s: inspect error = %v, want not found", id, err)
		}
	}
	if _, err := env.Client.NetworkInspect(ctx, staleN.ID, client.NetworkInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("stale network: inspect error = %v, want not found", err)
	}
	if _, err := env.Client.VolumeInspect(ctx, staleV.Volume.Name, client.VolumeInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("stale volume: inspect error = %v, want not found", err)
	}
	if _, err := env.Client.ContainerInspect(ctx, liveC, client.ContainerInspectOptions{}); err != nil {
		t.Errorf("container of a live process was swept: %v", err)
	}
}

func TestSweepRemovesTheRun(t *testing.T) {
	env := Require(t)
	ctx := t.Context()
	e2, err := New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	nw := e2.Network(t)
	c := e2.Run(t, ContainerSpec{Network: nw})
	other := env.Run(t, ContainerSpec{NoStart: true})

	if err := e2.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("container of the swept run: inspect error = %v, want not found", err)
	}
	if _, err := env.Client.NetworkInspect(ctx, nw, client.NetworkInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("network of the swept run: inspect error = %v, want not found", err)
	}
	if _, err := env.Client.ContainerInspect(ctx, other.ID, client.ContainerInspectOptions{}); err != nil {
		t.Errorf("container of another run was swept: %v", err)
	}
}
