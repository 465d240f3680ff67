package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// Sweep removes every service, container, network and volume of this run, whoever
// created it. Call it from TestMain after m.Run (Main does), so objects whose
// t.Cleanup never ran (a panic, a forgotten cleanup) do not outlive the run.
func (e *Env) Sweep(ctx context.Context) error {
	return e.sweep(ctx, LabelRun+"="+e.RunID, func(map[string]string) bool { return true })
}

// sweepStale removes test objects whose owning process is gone: a crashed
// or killed run. Objects without a readable pid label are stale too. Only
// objects an Env created count (they carry LabelRun): a container that
// merely inherits LabelTest from a fixture image (one docker-compose runs,
// say) belongs to whoever started it.
func (e *Env) sweepStale(ctx context.Context) error {
	return e.sweep(ctx, LabelRun, func(labels map[string]string) bool {
		pid, err := strconv.Atoi(labels[LabelPID])
		return err != nil || !processAlive(pid)
	})
}

// sweep removes the containers, then the networks and volumes, that match
// the label filter and for which remove returns true.
func (e *Env) sweep(ctx context.Context, label string, remove func(map[string]string) bool) error {
	f := make(client.Filters).Add("label", label)
	var errs []error

	// Services first: their tasks' containers carry the labels too, and
	// would only be started again. Listing fails on a non-manager; that
	// simply means there are no services.
	if svcs, err := e.Client.ServiceList(ctx, client.ServiceListOptions{Filters: f}); err == nil {
		for _, s := range svcs.Items {
			if !remove(s.Spec.Labels) {
				continue
			}
			if _, err := e.Client.ServiceRemove(ctx, s.ID, client.ServiceRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("sweep: remove service %s: %w", s.Spec.Name, err))
			}
		}
	}

	// Secrets once their services are gone (a secret in use is refused;
	// the next sweep gets it).
	if secrets, err := e.Client.SecretList(ctx, client.SecretListOptions{Filters: f}); err == nil {
		for _, s := range secrets.Items {
			if remove(s.Spec.Labels) {
				_, _ = e.Client.SecretRemove(ctx, s.ID, client.SecretRemoveOptions{})
			}
		}
	}

	cs, err := e.Client.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return fmt.Errorf("sweep: list containers with label %s: %w", label, err)
	}
	for _, c := range cs.Items {
		if !remove(c.Labels) {
			continue
		}
		if err := e.removeContainer(ctx, c.ID); err != nil {
			errs = append(errs, fmt.Errorf("sweep: %w", err))
		}
	}

	// Cluster directories (node sockets) once their node containers are gone.
	errs = append(errs, sweepClusterDirs(label, remove)...)

	ns, err := e.Client.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("sweep: list networks with label %s: %w", label, err))...)
	}
	for _, n := range ns.Items {
		if !remove(n.Labels) {
			continue
		}
		if _, err := e.Client.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			if e.leakedEndpoint(ctx, n.ID, err) {
				// The engine keeps an endpoint of a container it has
				// removed (seen with dockerd 20.10): no run can remove
				// the network, and failing every test for it helps
				// no one.
				fmt.Fprintf(os.Stderr, "testenv: network %s is held by an endpoint of no container, which the engine leaked; left in place (restarting dockerd removes it)\n", n.Name)
				continue
			}
			errs = append(errs, fmt.Errorf("sweep: remove network %s: %w", n.Name, err))
		}
	}

	vs, err := e.Client.VolumeList(ctx, client.VolumeListOptions{Filters: f})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("sweep: list volumes with label %s: %w", label, err))...)
	}
	for _, v := range vs.Items {
		if !remove(v.Labels) {
			continue
		}
		if _, err := e.Client.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("sweep: remove volume %s: %w", v.Name, err))
		}
	}
	return errors.Join(errs...)
}

// processAlive reports whether pid names a live process on this machine.
// EPERM means it exists but belongs to someone else. A recycled pid makes a
// stale object look alive; it is then swept by a later run.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// leakedEndpoint reports whether err, from removing network id, is the
// engine refusing for active endpoints while the network lists no
// container at all.
func (e *Env) leakedEndpoint(ctx context.Context, id string, err error) bool {
	if !strings.Contains(err.Error(), "has active endpoints") {
		return false
	}
	res, ierr := e.Client.NetworkInspect(ctx, id, client.NetworkInspectOptions{})
	return ierr == nil && len(res.Network.Containers) == 0
}
