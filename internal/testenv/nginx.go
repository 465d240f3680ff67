package testenv

import (
	"context"
	"fmt"
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

// NginxImage returns the tag of an image FROM scratch holding the host's
// Debian nginx: /usr/sbin/nginx, the shared libraries ldd names, mime.types,
// a passwd and group with root, nobody and www-data, the CA bundle, and
// writable /var/log/nginx, /var/lib/nginx, /run and /tmp. It starts nginx in
// the foreground on NginxBootstrap.
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
