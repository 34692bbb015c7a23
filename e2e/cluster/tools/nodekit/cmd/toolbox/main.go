// Command toolbox is the single static binary inside the smoke-test image. No registry is
// reachable, so instead of busybox the test workload uses these few verbs:
//
//	toolbox sleep                      block until SIGTERM
//	toolbox serve -addr :8080 -dir /data
//	                                   HTTP: GET /file/NAME reads, PUT /file/NAME writes
//	                                   a file under dir; GET /hostname names the pod
//	toolbox get URL                    print the body of an HTTP GET (non-2xx fails)
//	toolbox put URL DATA               HTTP PUT DATA to URL
//	toolbox lookup [-server IP:PORT] NAME
//	                                   print the addresses NAME resolves to, asking the
//	                                   given DNS server instead of /etc/resolv.conf's
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch args := os.Args[2:]; os.Args[1] {
	case "sleep":
		waitForSignal()
	case "serve":
		err = serve(args)
	case "get":
		err = get(args)
	case "put":
		err = put(args)
	case "lookup":
		err = lookup(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "toolbox:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: toolbox sleep | serve [-addr :8080] [-dir /data] | get URL | put URL DATA | lookup [-server IP:PORT] NAME")
	os.Exit(2)
}

func waitForSignal() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	<-sigs
}

func serve(args []string) error {
	addr, dir := ":8080", "/data"
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "-addr":
			addr = args[i+1]
		case "-dir":
			dir = args[i+1]
		default:
			return fmt.Errorf("serve: unknown flag %s", args[i])
		}
	}
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/hostname", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, host)
	})
	mux.HandleFunc("/file/", func(w http.ResponseWriter, r *http.Request) {
		name := filepath.Base(strings.TrimPrefix(r.URL.Path, "/file/"))
		path := filepath.Join(dir, name)
		switch r.Method {
		case http.MethodGet:
			data, err := os.ReadFile(path)
			if err != nil {
				http.Error(w, err.Error(), http.StatusNotFound)
				return
			}
			w.Write(data)
		case http.MethodPut:
			data, err := io.ReadAll(r.Body)
			if err == nil {
				err = os.WriteFile(path, data, 0o644)
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			fmt.Fprintf(w, "wrote %d bytes to %s\n", len(data), path)
		default:
			http.Error(w, "GET or PUT", http.StatusMethodNotAllowed)
		}
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		waitForSignal()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	fmt.Printf("serving %s on %s as %s\n", dir, addr, host)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		return err
	}
	return nil
}

var client = &http.Client{Timeout: 10 * time.Second}

func get(args []string) error {
	if len(args) != 1 {
		usage()
	}
	return do(http.MethodGet, args[0], nil)
}

func put(args []string) error {
	if len(args) != 2 {
		usage()
	}
	return do(http.MethodPut, args[0], strings.NewReader(args[1]))
}

func do(method, url string, body io.Reader) error {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	os.Stdout.Write(data)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s", method, url, resp.Status)
	}
	return nil
}

func lookup(args []string) error {
	resolver := net.DefaultResolver
	if len(args) == 3 && args[0] == "-server" {
		server := args[1]
		resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		}}
		args = args[2:]
	}
	if len(args) != 1 {
		usage()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addrs, err := resolver.LookupHost(ctx, args[0])
	if err != nil {
		return err
	}
	for _, a := range addrs {
		fmt.Println(a)
	}
	return nil
}
