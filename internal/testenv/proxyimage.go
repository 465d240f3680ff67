package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// The proxy images (nginx, haproxy) are FROM scratch, assembled from the
// files of the host's Debian package: no registry is reachable here.

// imageFile is a file or directory of a package image.
type imageFile struct {
	mode int64
	dir  bool
	data []byte
}

// packageImage is an image FROM scratch holding files, run by entrypoint
// and cmd (exec form).
type packageImage struct {
	// repo is the repository; the tag is a hash of the content.
	repo string
	// kind is the LabelImage value.
	kind            string
	entrypoint, cmd []string
	files           map[string]imageFile
}

// build returns the image's tag, building it unless an image of the same
// content exists (kept across runs, like the backend image).
func (e *Env) buildPackageImage(ctx context.Context, img packageImage) (string, error) {
	quoted := func(args []string) string {
		q := make([]string, len(args))
		for i, a := range args {
			q[i] = fmt.Sprintf("%q", a)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	dockerfile := "FROM scratch\nCOPY rootfs/ /\nENTRYPOINT " + quoted(img.entrypoint) + "\nCMD " + quoted(img.cmd) + "\n"
	sum := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(img.files)) {
		sum.Write([]byte(name))
		sum.Write(img.files[name].data)
	}
	sum.Write([]byte(dockerfile + LabelTest + LabelImage))
	tag := img.repo + ":" + hex.EncodeToString(sum.Sum(nil))[:16]

	unlock, err := lockFile(filepath.Join(os.TempDir(), img.repo+".lock"))
	if err != nil {
		return "", fmt.Errorf("%s image: %w", img.kind, err)
	}
	defer unlock()
	if _, err := e.Client.ImageInspect(ctx, tag); err == nil {
		return tag, nil
	} else if !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("%s image: inspect %s: %w", img.kind, tag, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	write := func(name string, f imageFile) error {
		hdr := &tar.Header{Name: name, Mode: f.mode, ModTime: now}
		if f.dir {
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
		} else {
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(f.data)
		return err
	}
	if err := write("Dockerfile", imageFile{mode: 0o644, data: []byte(dockerfile)}); err != nil {
		return "", err
	}
	for _, name := range slices.Sorted(maps.Keys(img.files)) {
		if err := write("rootfs"+name, img.files[name]); err != nil {
			return "", fmt.Errorf("%s image: %w", img.kind, err)
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	res, err := e.Client.ImageBuild(ctx, &buf, client.ImageBuildOptions{
		Tags: []string{tag}, Dockerfile: "Dockerfile", Remove: true, ForceRemove: true,
		Labels:  map[string]string{LabelTest: "1", LabelImage: img.kind},
		Version: build.BuilderV1,
	})
	if err != nil {
		return "", fmt.Errorf("%s image: build %s: %w", img.kind, tag, err)
	}
	defer res.Body.Close()
	if err := readBuildOutput(res.Body); err != nil {
		return "", fmt.Errorf("%s image: build %s: %w", img.kind, tag, err)
	}
	return tag, nil
}

// lddPath matches the library paths in ldd's output.
var lddPath = regexp.MustCompile(`(?m)(/\S+)\s+\(0x`)

// binaryFiles returns the executable bin, installed at path, with the
// shared libraries ldd names, and the base files every proxy image has: a
// passwd and group with root, nobody and users, the CA bundle (backends
// over TLS are verified against it), and /run and /tmp.
func binaryFiles(bin, path string, users map[string]int) (map[string]imageFile, error) {
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	files := map[string]imageFile{}
	add := func(path, from string, mode int64) error {
		b, err := os.ReadFile(from) // follows symlinks: the image gets the real file
		if err != nil {
			return err
		}
		files[path] = imageFile{mode: mode, data: b}
		return nil
	}
	if err := add(path, bin, 0o755); err != nil {
		return nil, err
	}
	for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
		if err := add(m[1], m[1], 0o755); err != nil {
			return nil, fmt.Errorf("library %s: %w", m[1], err)
		}
	}
	if err := add("/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt", 0o644); err != nil {
		return nil, fmt.Errorf("CA bundle (Debian package ca-certificates): %w", err)
	}
	passwd := "root:x:0:0:root:/root:/bin/false\n"
	group := "root:x:0:\n"
	for _, name := range slices.Sorted(maps.Keys(users)) {
		passwd += fmt.Sprintf("%s:x:%d:%d:%s:/nonexistent:/bin/false\n", name, users[name], users[name], name)
		group += fmt.Sprintf("%s:x:%d:\n", name, users[name])
	}
	passwd += "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	group += "nogroup:x:65534:\n"
	text := map[string]string{"/etc/passwd": passwd, "/etc/group": group, "/etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n"}
	for p, s := range text {
		files[p] = imageFile{mode: 0o644, data: []byte(s)}
	}
	for _, d := range []string{"/run", "/tmp"} {
		files[d] = imageFile{mode: 0o1777, dir: true}
	}
	return files, nil
}

// lookPackageBinary finds a Debian package's executable in PATH or /usr/sbin.
func lookPackageBinary(name string) (string, error) {
	for _, p := range []string{name, "/usr/sbin/" + name} {
		if path, err := exec.LookPath(p); err == nil {
			return path, nil
		}
	}
	return "", fmt.Errorf("%s is not installed (apt-get install %s)", name, name)
}

// ProxySpec describes a proxy container for RunNginx and RunHAProxy.
type ProxySpec struct {
	// Name is optional; it is prefixed with "itest-<runid>-".
	Name string
	// Labels are added to the run labels; interlock.ext.name marks the
	// container as the proxy Interlock drives.
	Labels map[string]string
	// Ports are container ports published on 127.0.0.1 at random host
	// ports (see ProxyContainer.Ports).
	Ports []uint16
	// Binds are volume bindings, "SRC:DST".
	Binds []string
	// Cmd replaces the image's arguments.
	Cmd []string
	// Network attaches the container to this network instead of the
	// default bridge.
	Network string
	// Hostname is the container's host name; empty: Docker's default, the
	// first 12 characters of its ID.
	Hostname string
}

// ProxyContainer is a running proxy container.
type ProxyContainer struct {
	ID, Name string
	// Ports maps each published container port to its 127.0.0.1 port.
	Ports map[uint16]uint16
}

// runProxy creates and starts a container of img (of the given kind) and
// registers a t.Cleanup that force-removes it (logging its output when the
// test failed).
func (e *Env) runProxy(t testing.TB, kind, img string, spec ProxySpec) ProxyContainer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name := e.name(spec.Name, kind)
	cfg := &container.Config{Image: img, Labels: e.withLabels(spec.Labels), ExposedPorts: network.PortSet{}, Cmd: spec.Cmd, Hostname: spec.Hostname}
	host := &container.HostConfig{PortBindings: network.PortMap{}, Binds: spec.Binds}
	var netcfg *network.NetworkingConfig
	if spec.Network != "" {
		host.NetworkMode = container.NetworkMode(spec.Network)
		netcfg = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{spec.Network: {}}}
	}
	for _, p := range spec.Ports {
		cfg.ExposedPorts[tcpPort(p)] = struct{}{}
		host.PortBindings[tcpPort(p)] = []network.PortBinding{{HostIP: netip.MustParseAddr("127.0.0.1")}}
	}
	res, err := e.Client.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Config: cfg, HostConfig: host, NetworkingConfig: netcfg})
	if err != nil {
		t.Fatalf("create %s container %s: %v", kind, name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if t.Failed() {
			if logs, err := e.Logs(ctx, res.ID); err == nil {
				t.Logf("logs of %s container %s:\n%s", kind, name, logs)
			}
		}
		if err := e.removeContainer(ctx, res.ID); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := e.Start(ctx, res.ID); err != nil {
		t.Fatal(err)
	}
	ins, err := e.Client.ContainerInspect(ctx, res.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatalf("inspect %s container %s: %v", kind, name, err)
	}
	c := ProxyContainer{ID: res.ID, Name: name, Ports: map[uint16]uint16{}}
	if ns := ins.Container.NetworkSettings; ns != nil {
		for port, bindings := range ns.Ports {
			for _, b := range bindings {
				var hp uint16
				if _, err := fmt.Sscan(b.HostPort, &hp); err == nil && hp != 0 {
					c.Ports[port.Num()] = hp
				}
			}
		}
	}
	if len(c.Ports) != len(spec.Ports) {
		t.Fatalf("%s container %s: published %v, want ports %v (%s)", kind, name, c.Ports, spec.Ports, strings.TrimSpace(fmt.Sprint(ins.Container.State)))
	}
	return c
}

// Volume creates a volume carrying the run labels and removes it in a
// t.Cleanup (which runs after the cleanups of containers started later).
func (e *Env) Volume(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := e.name("", "vol")
	if _, err := e.Client.VolumeCreate(ctx, client.VolumeCreateOptions{Name: name, Labels: e.Labels()}); err != nil {
		t.Fatalf("create volume %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := e.Client.VolumeRemove(ctx, name, client.VolumeRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("cleanup: remove volume %s: %v", name, err)
		}
	})
	return name
}
