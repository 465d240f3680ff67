package testenv

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"testing"
	"time"
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

// NginxStreamModule is where Debian's libnginx-mod-stream puts nginx's
// stream module (SNI passthrough needs it; Debian builds it dynamic).
const NginxStreamModule = "/usr/lib/nginx/modules/ngx_stream_module.so"

// NginxImage returns the tag of an image FROM scratch holding the host's
// Debian nginx: /usr/sbin/nginx, the shared libraries ldd names, mime.types,
// a passwd and group with root, nobody and www-data, the CA bundle, and
// writable /var/log/nginx, /var/lib/nginx, /run and /tmp. When the host has
// the stream module (NginxStreamModule), the image has it too, at the same
// path, with the libraries it needs. It starts nginx in the foreground on
// NginxBootstrap.
func (e *Env) NginxImage(ctx context.Context) (string, error) {
	bin, err := lookPackageBinary("nginx")
	if err != nil {
		return "", fmt.Errorf("nginx image: %w", err)
	}
	files, err := binaryFiles(bin, "/usr/sbin/nginx", map[string]int{"www-data": 33})
	if err != nil {
		return "", fmt.Errorf("nginx image: %w", err)
	}
	mime, err := os.ReadFile("/etc/nginx/mime.types")
	if err != nil {
		return "", fmt.Errorf("nginx image: %w", err)
	}
	files["/etc/nginx/mime.types"] = imageFile{mode: 0o644, data: mime}
	if err := addLibrary(files, NginxStreamModule); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("nginx image: %w", err)
	}
	files["/etc/nginx/nginx.conf"] = imageFile{mode: 0o644, data: []byte(NginxBootstrap)}
	for _, d := range []string{"/var/log/nginx", "/var/lib/nginx", "/etc/nginx/conf.d", "/usr/share/nginx"} {
		files[d] = imageFile{mode: 0o1777, dir: true}
	}
	return e.buildPackageImage(ctx, packageImage{
		repo: NginxRepo, kind: "nginx", files: files,
		entrypoint: []string{"/usr/sbin/nginx", "-g", "daemon off;"}, cmd: []string{"-c", "/etc/nginx/nginx.conf"},
	})
}

// RunNginx creates and starts a proxy container from NginxImage (its
// arguments default to ["-c", "/etc/nginx/nginx.conf"]) and registers a
// t.Cleanup that force-removes it.
func (e *Env) RunNginx(t testing.TB, spec ProxySpec) ProxyContainer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	img, err := e.NginxImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return e.runProxy(t, "nginx", img, spec)
}

// addLibrary adds the shared object at path to files, with the libraries
// ldd names for it that files lacks. A missing path is fs.ErrNotExist.
func addLibrary(files map[string]imageFile, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	files[path] = imageFile{mode: 0o644, data: b}
	out, err := exec.Command("ldd", path).Output()
	if err != nil {
		return fmt.Errorf("ldd %s: %w", path, err)
	}
	for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
		if _, ok := files[m[1]]; ok {
			continue
		}
		lib, err := os.ReadFile(m[1])
		if err != nil {
			return fmt.Errorf("library %s of %s: %w", m[1], path, err)
		}
		files[m[1]] = imageFile{mode: 0o755, data: lib}
	}
	return nil
}
