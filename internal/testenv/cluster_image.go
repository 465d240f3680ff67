package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
)

// NodeRepo is the repository of the Swarm node image; its tag is a hash of
// the image content.
const NodeRepo = "interlock-test-node"

// nodeBinaries are the host's engine binaries a node image carries, at the
// same paths. dockerd finds the others in PATH.
var nodeBinaries = []string{
	"/usr/sbin/dockerd",
	"/usr/bin/containerd",
	"/usr/bin/containerd-shim-runc-v2",
	"/usr/sbin/runc",
	"/usr/bin/docker-init",
	"/usr/sbin/docker-proxy",
	"/usr/sbin/xtables-nft-multi",
}

// xtablesDir holds the iptables extensions xtables-nft-multi loads.
const xtablesDir = "/usr/lib/x86_64-linux-gnu/xtables"

// nodePath is PATH inside a node.
const nodePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ErrNoEngineBinaries is returned (wrapped) by NodeImage when the host lacks
// the engine binaries a node image is made of: a machine whose Docker
// engine runs elsewhere (a VM of Docker Desktop, a remote DOCKER_HOST).
var ErrNoEngineBinaries = errors.New("the host's docker engine binaries are missing")

// NodeImage returns the tag of the Swarm node image, building it when the
// engine lacks it: FROM scratch, the host's own engine binaries (dockerd, containerd,
// containerd-shim-runc-v2, runc, docker-init, docker-proxy and
// xtables-nft-multi with its extensions), every shared library ldd names
// for them, and the entrypoint in testdata/node built static. No registry
// is needed. The tag is a hash of all of it (reading the files takes a
// moment, the build seconds), so the image is built once per content and
// kept across runs (labelled interlock-test.image=node), like
// the backend image.
//
// The image's /etc/group names the group "docker" with the gid of the host
// engine's socket, so that a node's socket gets that group, and a
// container given that gid (as the Interlock image's nobody is) may use it.
func (e *Env) NodeImage(ctx context.Context) (string, error) {
	files := map[string]imageFile{}
	for _, bin := range nodeBinaries {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("node image: %w: %s: %w (Debian packages docker.io, containerd, runc, tini, iptables)", ErrNoEngineBinaries, bin, err)
		}
		fs, err := binaryWithLibraries(bin)
		if err != nil {
			return "", fmt.Errorf("node image: %w", err)
		}
		for p, f := range fs {
			files[p] = f
		}
	}
	plugins, err := filepath.Glob(filepath.Join(xtablesDir, "*.so"))
	if err != nil || len(plugins) == 0 {
		return "", fmt.Errorf("node image: %w: no iptables extensions in %s", ErrNoEngineBinaries, xtablesDir)
	}
	for _, p := range plugins {
		fs, err := binaryWithLibraries(p)
		if err != nil {
			return "", fmt.Errorf("node image: %w", err)
		}
		for p, f := range fs {
			files[p] = f
		}
	}
	dir, err := packageDir(ctx)
	if err != nil {
		return "", fmt.Errorf("node image: %w", err)
	}
	tmp, err := os.MkdirTemp("", "interlock-node-")
	if err != nil {
		return "", fmt.Errorf("node image: %w", err)
	}
	defer os.RemoveAll(tmp)
	entry, err := compileStatic(ctx, filepath.Join(dir, "testdata", "node"), filepath.Join(tmp, "node"))
	if err != nil {
		return "", fmt.Errorf("node image: %w", err)
	}
	files["/node"] = imageFile{mode: 0o755, data: entry}
	gid, err := dockerSocketGID()
	if err != nil {
		return "", fmt.Errorf("node image: %w", err)
	}
	files["/etc/passwd"] = imageFile{mode: 0o644, data: []byte("root:x:0:0:root:/root:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")}
	files["/etc/group"] = imageFile{mode: 0o644, data: []byte("root:x:0:\ndocker:x:" + strconv.Itoa(gid) + ":\nnogroup:x:65534:\n")}
	return e.buildPackageImage(ctx, packageImage{
		repo: NodeRepo, kind: "node", files: files,
		entrypoint: []string{"/node"}, cmd: []string{"/usr/sbin/dockerd"},
	})
}

// binaryWithLibraries returns the file at path (followed if a link) with
// the shared libraries ldd names for it, each at its own path. A file ldd
// calls "not a dynamic executable" (docker-init is static) comes alone.
func binaryWithLibraries(path string) (map[string]imageFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	files := map[string]imageFile{path: {mode: 0o755, data: data}}
	out, err := exec.Command("ldd", path).CombinedOutput()
	if err != nil {
		// ldd exits 1 for a static binary.
		return files, nil //nolint:nilerr // see above
	}
	for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
		b, err := os.ReadFile(m[1])
		if err != nil {
			return nil, fmt.Errorf("library %s of %s: %w", m[1], path, err)
		}
		files[m[1]] = imageFile{mode: 0o755, data: b}
	}
	return files, nil
}

// dockerSocketGID is the group of the host engine's socket (0 when it is
// not a local socket).
func dockerSocketGID() (int, error) {
	var st syscall.Stat_t
	if err := syscall.Stat("/var/run/docker.sock", &st); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return 0, nil
		}
		return 0, fmt.Errorf("stat the docker socket: %w", err)
	}
	return int(st.Gid), nil
}
