// Command interlock gives Docker containers their host names: it watches the
// engine, routes labelled containers and keeps a proxy in step.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise it comes from the module build info.
var version = ""

const usage = `interlock gives Docker containers and services their host names.

Usage:
  interlock run [flags]      watch Docker and route labelled containers
  interlock render [flags]   print what would be routed for the current Docker state (JSON;
                             with --proxy nginx or haproxy, the exact file that would be written)
  interlock check FILE       validate a configuration file
  interlock check --template FILE [--proxy nginx|haproxy]
                             render a sample with an nginx (default) or haproxy template and
                             validate it with nginx -t or haproxy -c
  interlock explain NAME     ask a running Interlock why a container, service or host is
                             routed or not: the labels it read, the routes built, the reason
                             it was left out
  interlock version          print the version

Run "interlock run -h" for the flags of run and render.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(realMain(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// realMain runs one subcommand and returns the exit code.
func realMain(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		err = runCommand(ctx, rest, environ, stderr)
	case "render":
		err = renderCommand(ctx, rest, environ, stdout)
	case "check":
		err = checkCommand(ctx, rest, stdout)
	case "explain":
		err = explainCommand(ctx, rest, environ, stdout)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "interlock", versionString())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "interlock: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if errors.Is(err, errUsage) {
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "interlock:", err)
		return 1
	}
	return 0
}

// errUsage marks an error whose message the flag package already printed.
var errUsage = errors.New("usage")

func versionString() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}
