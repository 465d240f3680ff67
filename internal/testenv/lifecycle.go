package testenv

import (
	"bytes"
	"context"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
)

// Start starts a created or stopped container.
func (e *Env) Start(ctx context.Context, id string) error {
	if _, err := e.Client.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	return nil
}

// Stop sends SIGTERM and waits for the container to exit, killing it after
// its configured stop timeout (ContainerSpec.StopTimeout, else the engine's
// default of 10 s). It returns once the container has stopped.
func (e *Env) Stop(ctx context.Context, id string) error {
	if _, err := e.Client.ContainerStop(ctx, id, client.ContainerStopOptions{}); err != nil {
		return fmt.Errorf("stop container %s: %w", id, err)
	}
	return nil
}

// StopWithin is Stop with an explicit timeout in seconds before SIGKILL.
func (e *Env) StopWithin(ctx context.Context, id string, seconds int) error {
	if _, err := e.Client.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &seconds}); err != nil {
		return fmt.Errorf("stop container %s within %ds: %w", id, seconds, err)
	}
	return nil
}

// Kill sends SIGKILL: the container dies without draining.
func (e *Env) Kill(ctx context.Context, id string) error {
	return e.Signal(ctx, id, "SIGKILL")
}

// Signal sends sig (such as "SIGTERM") to the container's main process and
// returns at once.
func (e *Env) Signal(ctx context.Context, id, sig string) error {
	if _, err := e.Client.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: sig}); err != nil {
		return fmt.Errorf("send %s to container %s: %w", sig, id, err)
	}
	return nil
}

// Pause freezes the container's processes.
func (e *Env) Pause(ctx context.Context, id string) error {
	if _, err := e.Client.ContainerPause(ctx, id, client.ContainerPauseOptions{}); err != nil {
		return fmt.Errorf("pause container %s: %w", id, err)
	}
	return nil
}

// Unpause resumes a paused container.
func (e *Env) Unpause(ctx context.Context, id string) error {
	if _, err := e.Client.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{}); err != nil {
		return fmt.Errorf("unpause container %s: %w", id, err)
	}
	return nil
}

// Remove force-removes the container and its anonymous volumes. Removing a
// container that is already gone is not an error, so a test may remove
// early and leave the registered cleanup to find nothing.
func (e *Env) Remove(ctx context.Context, id string) error {
	return e.removeContainer(ctx, id)
}

func (e *Env) removeContainer(ctx context.Context, id string) error {
	_, err := e.Client.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	return nil
}

// Connect attaches a running or created container to a network.
func (e *Env) Connect(ctx context.Context, networkName, id string) error {
	if _, err := e.Client.NetworkConnect(ctx, networkName, client.NetworkConnectOptions{Container: id}); err != nil {
		return fmt.Errorf("connect container %s to network %s: %w", id, networkName, err)
	}
	return nil
}

// Disconnect detaches a container from a network.
func (e *Env) Disconnect(ctx context.Context, networkName, id string) error {
	if _, err := e.Client.NetworkDisconnect(ctx, networkName, client.NetworkDisconnectOptions{Container: id, Force: true}); err != nil {
		return fmt.Errorf("disconnect container %s from network %s: %w", id, networkName, err)
	}
	return nil
}

// Logs returns the last 200 lines of the container's stdout and stderr,
// interleaved as the engine stored them.
func (e *Env) Logs(ctx context.Context, id string) (string, error) {
	rc, err := e.Client.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: "200"})
	if err != nil {
		return "", fmt.Errorf("logs of container %s: %w", id, err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := stdcopy.StdCopy(&buf, &buf, rc); err != nil {
		return buf.String(), fmt.Errorf("logs of container %s: %w", id, err)
	}
	return buf.String(), nil
}
