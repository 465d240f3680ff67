package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
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

// NginxRepo is the repository of the nginx proxy image; its tag is a hash
// of the image content.
const NginxRepo = "interlock-test-nginx"

// NginxBootstrap is the configuration the image starts with: it answers
// every request with 503 until Interlock delivers the real one.
const NginxBootstrap = `error_log stderr warn;
events {}
http {
    access_log off;
    server {
        listen 80 default_server;
        return 503 "interlock: no configuration yet\n";
    }
}
`

// NginxBinary returns the path of the host's nginx. Without one the test
// is skipped, or fails under CI=true (make test installs the Debian
// package).
func NginxBinary(tb testing.TB) string {
	tb.Helper()
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		tb.Fatal("nginx is not installed (Debian package nginx; make deps installs it)")
	}
	tb.Skip("skipping: nginx is not installed (apt-get install nginx)")
	return ""
}

// NginxImage returns the tag of an image FROM scratch holding the host's
// Debian nginx: /usr/sbin/nginx, the shared libraries ldd names, mime.types,
// a passwd and group with root, nobody and www-data, the CA bundle, and
// writable /var/log/nginx, /var/lib/nginx, /run and /tmp. It starts nginx in
// the foreground on NginxBootstrap. Built once per content (hash tag), kept
// across runs like the backend image.
func (e *Env) NginxImage(ctx context.Context) (string, error) {
	files, err := nginxFiles()
	if err != nil {
		return "", fmt.Errorf("nginx image: %w", err)
	}
	dockerfile := "FROM scratch\nCOPY rootfs/ /\n" +
		`ENTRYPOINT ["/usr/sbin/nginx", "-g", "daemon off;"]` + "\n" +
		`CMD ["-c", "/etc/nginx/nginx.conf"]` + "\n"
	sum := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(files)) {
		sum.Write([]byte(name))
		sum.Write(files[name].data)
	}
	sum.Write([]byte(dockerfile + LabelTest + LabelImage))
	tag := NginxRepo + ":" + hex.EncodeToString(sum.Sum(nil))[:16]

	unlock, err := lockFile(filepath.Join(os.TempDir(), NginxRepo+".lock"))
	if err != nil {
		return "", fmt.Errorf("nginx image: %w", err)
	}
	defer unlock()
	if _, err := e.Client.ImageInspect(ctx, tag); err == nil {
		return tag, nil
	} else if !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("nginx image: inspect %s: %w", tag, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	write := func(name string, f nginxFile) error {
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
	if err := write("Dockerfile", nginxFile{mode: 0o644, data: []byte(dockerfile)}); err != nil {
		return "", err
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if err := write("rootfs"+name, files[name]); err != nil {
			return "", fmt.Errorf("nginx image: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	res, err := e.Client.ImageBuild(ctx, &buf, client.ImageBuildOptions{
		Tags: []string{tag}, Dockerfile: "Dockerfile", Remove: true, ForceRemove: true,
		Labels:  map[string]string{LabelTest: "1", LabelImage: "nginx"},
		Version: build.BuilderV1,
	})
	if err != nil {
		return "", fmt.Errorf("nginx image: build %s: %w", tag, err)
	}
	defer res.Body.Close()
	if err := readBuildOutput(res.Body); err != nil {
		return "", fmt.Errorf("nginx image: build %s: %w", tag, err)
	}
	return tag, nil
}

type nginxFile struct {
	mode int64
	dir  bool
	data []byte
}

// lddPath matches the library paths in ldd's output.
var lddPath = regexp.MustCompile(`(?m)(/\S+)\s+\(0x`)

// nginxFiles collects the image's files, by absolute path.
func nginxFiles() (map[string]nginxFile, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/nginx"); err != nil {
			return nil, errors.New("nginx is not installed (apt-get install nginx)")
		}
	}
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	files := map[string]nginxFile{}
	add := func(path, from string, mode int64) error {
		b, err := os.ReadFile(from) // follows symlinks: the image gets the real file
		if err != nil {
			return err
		}
		files[path] = nginxFile{mode: mode, data: b}
		return nil
	}
	if err := add("/usr/sbin/nginx", bin, 0o755); err != nil {
		return nil, err
	}
	for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
		if err := add(m[1], m[1], 0o755); err != nil {
			return nil, fmt.Errorf("library %s: %w", m[1], err)
		}
	}
	if err := add("/etc/nginx/mime.types", "/etc/nginx/mime.types", 0o644); err != nil {
		return nil, err
	}
	if err := add("/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt", 0o644); err != nil {
		return nil, fmt.Errorf("CA bundle (Debian package ca-certificates): %w", err)
	}
	text := map[string]string{
		"/etc/nginx/nginx.conf": NginxBootstrap,
		"/etc/passwd": "root:x:0:0:root:/root:/bin/false\n" +
			"www-data:x:33:33:www-data:/var/www:/bin/false\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"/etc/group":         "root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n",
		"/etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
	}
	for p, s := range text {
		files[p] = nginxFile{mode: 0o644, data: []byte(s)}
	}
	for _, d := range []string{"/var/log/nginx", "/var/lib/nginx", "/run", "/tmp", "/etc/nginx/conf.d", "/usr/share/nginx"} {
		files[d] = nginxFile{mode: 0o1777, dir: true}
	}
	return files, nil
}

// NginxSpec describes a proxy container for RunNginx.
type NginxSpec struct {
	// Name is optional; it is prefixed with "itest-<runid>-".
	Name string
	// Labels are added to the run labels; interlock.ext.name marks the
	// container as the proxy Interlock drives.
	Labels map[string]string
	// Ports are container ports published on 127.0.0.1 at random host
	// ports (see NginxContainer.Ports).
	Ports []uint16
	// Binds are volume bindings, "SRC:DST".
	Binds []string
	// Cmd replaces the image's arguments (["-c", "/etc/nginx/nginx.conf"]).
	Cmd []string
	// Network attaches the container to this network instead of the
	// default bridge.
	Network string
}

// NginxContainer is a running proxy container.
type NginxContainer struct {
	ID, Name string
	// Ports maps each published container port to its 127.0.0.1 port.
	Ports map[uint16]uint16
}

// RunNginx creates and starts a proxy container from NginxImage and
// registers a t.Cleanup that force-removes it (logging its output when the
// test failed).
func (e *Env) RunNginx(t testing.TB, spec NginxSpec) NginxContainer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	img, err := e.NginxImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name := e.name(spec.Name, "nginx")
	cfg := &container.Config{Image: img, Labels: e.withLabels(spec.Labels), ExposedPorts: network.PortSet{}, Cmd: spec.Cmd}
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
		t.Fatalf("create nginx container %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if t.Failed() {
			if logs, err := e.Logs(ctx, res.ID); err == nil {
				t.Logf("logs of nginx container %s:\n%s", name, logs)
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
		t.Fatalf("inspect nginx container %s: %v", name, err)
	}
	c := NginxContainer{ID: res.ID, Name: name, Ports: map[uint16]uint16{}}
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
		t.Fatalf("nginx container %s: published %v, want ports %v (%s)", name, c.Ports, spec.Ports, strings.TrimSpace(fmt.Sprint(ins.Container.State)))
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
