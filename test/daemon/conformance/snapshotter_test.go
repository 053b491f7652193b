// containerd's snapshotter conformance suite (snapshots/testsuite), run through
// containerd's own gRPC proxy client (snapshots/proxy, what a proxy_plugins entry uses)
// against `thinstack serve`. Built offline from Debian's golang-github-containerd-containerd-dev
// by test/daemon/conformance.test.ts:
//
//	GO111MODULE=off GOPATH=<dir>:/usr/share/gocode GOPROXY=off go test -c
//
// The suite runs its subtests in parallel with the same key names, so every subtest gets
// a server of its own on a store of its own: THINSTACK_SERVE is the command line (a JSON
// array) that starts one; `--root DIR --address SOCKET` is appended.
package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"github.com/containerd/containerd/snapshots/testsuite"
	"google.golang.org/grpc"
)

func TestThinstack(t *testing.T) {
	var argv []string
	if err := json.Unmarshal([]byte(os.Getenv("THINSTACK_SERVE")), &argv); err != nil || len(argv) == 0 {
		t.Skip("THINSTACK_SERVE (a JSON array: the command that runs `thinstack serve`) is not set")
	}
	testsuite.SnapshotterSuite(t, "thinstack", func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		return serve(ctx, argv, root)
	})
}

// serve starts a server on a store in root and returns containerd's proxy snapshotter over it.
func serve(ctx context.Context, argv []string, root string) (snapshots.Snapshotter, func() error, error) {
	// The store lives outside the suite's directory: on a failure the suite logs the first
	// bytes of every file there, reading each whole, and the pool's sparse data file is
	// 100 GiB.
	store, err := os.MkdirTemp("", "thinstack-suite-")
	if err != nil {
		return nil, nil, err
	}
	sock := filepath.Join(root, "thinstack.sock")
	args := append(append([]string{}, argv[1:]...), "--root", store, "--address", sock)
	cmd := exec.Command(argv[0], args...)
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		os.RemoveAll(store)
		return nil, nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() error {
		defer os.RemoveAll(store)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("the server did not stop within 30 s of SIGTERM")
		}
	}
	// As containerd dials a proxy plugin (services/server/server.go), once the socket answers.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			return nil, nil, fmt.Errorf("the server exited before it listened: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			_ = stop()
			return nil, nil, fmt.Errorf("the server did not listen on %s within 60 s", sock)
		}
		time.Sleep(50 * time.Millisecond)
	}
	conn, err := grpc.DialContext(ctx, "unix://"+sock, grpc.WithInsecure(), grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}))
	if err != nil {
		_ = stop()
		return nil, nil, err
	}
	sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), "thinstack")
	return sn, func() error {
		conn.Close()
		return stop()
	}, nil
}
