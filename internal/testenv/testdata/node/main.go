// Command node is the entrypoint of the Swarm node image that
// testenv.Cluster builds: a container that runs a Docker engine of its own,
// made FROM scratch of the host's engine binaries. It is built as a static
// binary (CGO_ENABLED=0) and uses the standard library only.
//
// The node container is not privileged (this machine's capability set lacks
// CAP_SYS_RESOURCE, which --privileged demands), so the engine finds /sys
// and the cgroup hierarchies mounted read-only. Before it execs its
// arguments (dockerd and its flags), node
//
//   - remounts /sys and every mount under /sys/fs/cgroup read-write;
//   - creates the directories a FROM scratch root lacks (/tmp, /run,
//     /var/run, /var/lib/docker, /etc/docker);
//   - links the iptables commands to xtables-nft-multi, which picks its
//     personality from the name it was run by.
//
// It prints what it does to stderr, so `docker logs` of a node that did not
// come up tells why.
package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// xtablesLinks are the commands dockerd runs that xtables-nft-multi serves.
var xtablesLinks = []string{
	"iptables", "iptables-save", "iptables-restore",
	"ip6tables", "ip6tables-save", "ip6tables-restore",
}

func main() {
	if len(os.Args) < 2 {
		fatalf("usage: node COMMAND [ARG...] (such as /usr/bin/dockerd -H unix:///sock/docker.sock)")
	}
	for _, d := range []string{"/tmp", "/run", "/var/run", "/var/lib/docker", "/etc/docker"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			fatalf("mkdir %s: %v", d, err)
		}
	}
	if err := os.Chmod("/tmp", 0o1777); err != nil {
		fatalf("chmod /tmp: %v", err)
	}
	for _, name := range xtablesLinks {
		link := filepath.Join("/usr/sbin", name)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink("xtables-nft-multi", link); err != nil {
			fatalf("link %s: %v", link, err)
		}
	}
	if err := remountWritable(); err != nil {
		fatalf("%v", err)
	}
	cmd := os.Args[1]
	if !filepath.IsAbs(cmd) {
		fatalf("command %q: give an absolute path", cmd)
	}
	if err := syscall.Exec(cmd, os.Args[1:], os.Environ()); err != nil {
		fatalf("exec %s: %v", cmd, err)
	}
}

// remountWritable makes /sys, /sys/fs/cgroup and the cgroup hierarchies
// under it writable, keeping their nosuid, nodev and noexec flags.
func remountWritable() error {
	mounts, err := readMounts()
	if err != nil {
		return err
	}
	for _, m := range mounts {
		if m.point != "/sys" && m.point != "/sys/fs/cgroup" && !strings.HasPrefix(m.point, "/sys/fs/cgroup/") {
			continue
		}
		if !m.readOnly() {
			continue
		}
		flags := m.flags()
		// The read-only flag may be the mount's (a bind remount clears it)
		// or the superblock's (a plain remount does); clear both.
		errBind := syscall.Mount("", m.point, "", syscall.MS_REMOUNT|syscall.MS_BIND|flags, "")
		errSuper := syscall.Mount("", m.point, "", syscall.MS_REMOUNT|flags, "")
		if errBind != nil && errSuper != nil {
			return fmt.Errorf("remount %s read-write: %v; %v (the node container needs CAP_SYS_ADMIN and apparmor=unconfined)", m.point, errBind, errSuper)
		}
		fmt.Fprintf(os.Stderr, "node: remounted %s read-write\n", m.point)
	}
	return nil
}

// mount is one line of /proc/self/mountinfo, the parts remount needs.
type mount struct {
	point string
	opts  []string // per-mount options: rw or ro, nosuid, ...
}

func (m mount) readOnly() bool {
	for _, o := range m.opts {
		if o == "ro" {
			return true
		}
	}
	return false
}

// flags returns the mount's nosuid, nodev and noexec flags, which a remount
// must repeat (dropping them is refused or, worse, silently done).
func (m mount) flags() uintptr {
	var f uintptr
	for _, o := range m.opts {
		switch o {
		case "nosuid":
			f |= syscall.MS_NOSUID
		case "nodev":
			f |= syscall.MS_NODEV
		case "noexec":
			f |= syscall.MS_NOEXEC
		case "relatime":
			f |= syscall.MS_RELATIME
		}
	}
	return f
}

// readMounts parses /proc/self/mountinfo; parents come before children.
func readMounts() ([]mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		out = append(out, mount{point: unescape(fields[4]), opts: strings.Split(fields[5], ",")})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	return out, nil
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "node: "+format+"\n", args...)
	os.Exit(1)
}
