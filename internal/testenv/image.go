package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/client"
)

// BackendRepo is the repository name of the backend fixture image; its tag
// is a hash of the image content.
const BackendRepo = "interlock-test-backend"

// backendPath is where the fixture binary lives inside the image.
const backendPath = "/backend"

// BackendImage returns the tag of the backend fixture image built from
// testdata/backend, building it the first time: go build (CGO_ENABLED=0,
// -trimpath, -ldflags=-s -w) into a temporary directory, then an image FROM
// scratch tagged "interlock-test-backend:<hash of binary and Dockerfile>".
// A build is skipped when the engine already has that tag, so unchanged
// sources cost one go build (from the Go build cache) per process.
//
// The image is labelled interlock-test=1 and interlock-test.image=backend,
// and is not swept: see RemoveStaleImages.
func (e *Env) BackendImage(ctx context.Context) (string, error) {
	e.imageMu.Lock()
	defer e.imageMu.Unlock()
	if e.image != "" {
		return e.image, nil
	}
	tag, err := e.buildBackend(ctx)
	if err != nil {
		return "", err
	}
	e.image = tag
	return tag, nil
}

func (e *Env) buildBackend(ctx context.Context) (string, error) {
	return e.buildGoImage(ctx, goImage{repo: BackendRepo, kind: "backend", bin: "backend", source: backendSource})
}

// goImage is a FROM scratch image of one static Go program.
type goImage struct {
	repo string // image repository; the tag is a content hash
	kind string // value of the LabelImage label
	bin  string // binary name, at /bin in the image, its entrypoint
	// source returns the directory of the main package.
	source func(ctx context.Context) (string, error)
	// customDockerfile, when set, replaces the one-line image; extra are
	// more files for its build context.
	customDockerfile string
	extra            map[string][]byte
}

func (g goImage) dockerfile() string {
	if g.customDockerfile != "" {
		return g.customDockerfile
	}
	return "FROM scratch\nCOPY " + g.bin + " /" + g.bin + "\nENTRYPOINT [\"/" + g.bin + "\"]\n"
}

// buildGoImage compiles g statically and builds its image, unless the
// engine already has the tag for that content.
func (e *Env) buildGoImage(ctx context.Context, g goImage) (string, error) {
	tmp, err := os.MkdirTemp("", "interlock-"+g.kind+"-")
	if err != nil {
		return "", fmt.Errorf("%s image: %w", g.kind, err)
	}
	defer os.RemoveAll(tmp)
	src, err := g.source(ctx)
	if err != nil {
		return "", fmt.Errorf("%s image: %w", g.kind, err)
	}
	bin, err := compileStatic(ctx, src, filepath.Join(tmp, g.bin))
	if err != nil {
		return "", fmt.Errorf("%s image: %w", g.kind, err)
	}
	sum := sha256.New()
	sum.Write(bin)
	sum.Write([]byte(g.dockerfile()))
	for _, name := range slices.Sorted(maps.Keys(g.extra)) {
		sum.Write([]byte(name))
		sum.Write(g.extra[name])
	}
	sum.Write([]byte(LabelTest + LabelImage)) // image labels are part of its content
	tag := g.repo + ":" + hex.EncodeToString(sum.Sum(nil))[:16]

	// Test binaries of several packages start at once: one builds, the
	// others then find the tag.
	unlock, err := lockFile(filepath.Join(os.TempDir(), g.repo+".lock"))
	if err != nil {
		return "", fmt.Errorf("%s image: %w", g.kind, err)
	}
	defer unlock()

	if _, err := e.Client.ImageInspect(ctx, tag); err == nil {
		return tag, nil
	} else if !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("%s image: inspect %s: %w", g.kind, tag, err)
	}
	buildCtx, err := buildContext(g, bin)
	if err != nil {
		return "", fmt.Errorf("%s image: %w", g.kind, err)
	}
	res, err := e.Client.ImageBuild(ctx, buildCtx, client.ImageBuildOptions{
		Tags:        []string{tag},
		Dockerfile:  "Dockerfile",
		Remove:      true,
		ForceRemove: true,
		Labels:      map[string]string{LabelTest: "1", LabelImage: g.kind},
		Version:     build.BuilderV1, // no BuildKit session needed for FROM scratch
	})
	if err != nil {
		return "", fmt.Errorf("%s image: build %s: %w", g.kind, tag, err)
	}
	defer res.Body.Close()
	if err := readBuildOutput(res.Body); err != nil {
		return "", fmt.Errorf("%s image: build %s: %w", g.kind, tag, err)
	}
	if _, err := e.Client.ImageInspect(ctx, tag); err != nil {
		return "", fmt.Errorf("%s image: %s missing after build: %w", g.kind, tag, err)
	}
	return tag, nil
}

// compileStatic builds the main package in src into out and returns the
// binary.
func compileStatic(ctx context.Context, src, out string) ([]byte, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("go tool not in PATH: %w", err)
	}
	cmd := exec.CommandContext(ctx, goTool, "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = src
	// GOFLAGS is cleared so that flags meant for the tests (-race needs cgo)
	// never reach this static build.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH, "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build in %s: %w\n%s", src, err, b)
	}
	return os.ReadFile(out)
}

// backendSource finds testdata/backend next to this file.
func backendSource(ctx context.Context) (string, error) {
	dir, err := packageDir(ctx)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "testdata", "backend"), nil
}

// packageDir is this package's source directory, found from this file or,
// when the test binary was built with -trimpath, through go list.
func packageDir(ctx context.Context) (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		dir := filepath.Dir(file)
		if _, err := os.Stat(filepath.Join(dir, "testdata", "backend", "main.go")); err == nil {
			return dir, nil
		}
	}
	out, err := exec.CommandContext(ctx, "go", "list", "-f", "{{.Dir}}", "github.com/interlock-proxy/interlock/internal/testenv").Output()
	if err != nil {
		return "", fmt.Errorf("find the testenv package: go list: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// buildContext returns the build context: a tar of the Dockerfile and the
// binary.
func buildContext(g goImage, bin []byte) (io.Reader, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte(g.dockerfile())},
		{g.bin, 0o755, bin},
	}
	for _, name := range slices.Sorted(maps.Keys(g.extra)) {
		files = append(files, struct {
			name string
			mode int64
			data []byte
		}{name, 0o644, g.extra[name]})
	}
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: now, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("write build context: %w", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("write build context: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("write build context: %w", err)
	}
	return &buf, nil
}

// buildMessage is one line of the engine's JSON build output.
type buildMessage struct {
	Stream      string `json:"stream"`
	Error       string `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
}

// readBuildOutput drains the build stream and returns the error message the
// engine reported, if any, with the last lines of output for context.
func readBuildOutput(r io.Reader) error {
	dec := json.NewDecoder(r)
	var tail []string
	for {
		var m buildMessage
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("read build output: %w", err)
		}
		if s := strings.TrimSpace(m.Stream); s != "" {
			tail = append(tail, s)
			if len(tail) > 10 {
				tail = tail[1:]
			}
		}
		msg := m.Error
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			msg = m.ErrorDetail.Message
		}
		if msg != "" {
			return fmt.Errorf("engine: %s\n%s", msg, strings.Join(tail, "\n"))
		}
	}
}

// lockFile takes an exclusive flock on path, creating it if needed.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}

// RemoveStaleImages deletes every interlock-test-backend tag except the
// current one (building it first if needed). Tags still used by a container
// are kept: they belong to a run in progress.
func (e *Env) RemoveStaleImages(ctx context.Context) error {
	current, err := e.BackendImage(ctx)
	if err != nil {
		return err
	}
	res, err := e.Client.ImageList(ctx, client.ImageListOptions{
		Filters: make(client.Filters).Add("reference", BackendRepo),
	})
	if err != nil {
		return fmt.Errorf("list %s images: %w", BackendRepo, err)
	}
	var errs []error
	for _, img := range res.Items {
		for _, tag := range img.RepoTags {
			if !strings.HasPrefix(tag, BackendRepo+":") || tag == current {
				continue
			}
			_, err := e.Client.ImageRemove(ctx, tag, client.ImageRemoveOptions{PruneChildren: true})
			if err != nil && !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err) {
				errs = append(errs, fmt.Errorf("remove image %s: %w", tag, err))
			}
		}
	}
	return errors.Join(errs...)
}
