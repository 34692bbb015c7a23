// Command ocimage packs local files into a single-layer OCI image and writes it as an
// image-layout tarball that `ctr images import` and `kind load image-archive` accept.
// It is how the e2e cluster gets images without any registry.
//
//	ocimage -name riffle.local/pause:3.10 -add bin/pause:/pause -entrypoint /pause -o pause.tar
//
// The output is byte-for-byte reproducible: fixed timestamps and owners, sorted entries.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"
)

type addList []string

func (a *addList) String() string     { return strings.Join(*a, ",") }
func (a *addList) Set(s string) error { *a = append(*a, s); return nil }

// epoch is the timestamp of every entry, so equal inputs give equal digests.
var epoch = time.Unix(0, 0).UTC()

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func main() {
	var adds addList
	name := flag.String("name", "", "image reference, e.g. riffle.local/toolbox:1 (required)")
	out := flag.String("o", "", "output tarball (required)")
	entrypoint := flag.String("entrypoint", "", "entrypoint path inside the image")
	arch := flag.String("arch", runtime.GOARCH, "image architecture")
	flag.Var(&adds, "add", "SRC:DEST file to put in the image (repeatable)")
	flag.Parse()
	if *name == "" || *out == "" || len(adds) == 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*name, *out, *entrypoint, *arch, adds); err != nil {
		fmt.Fprintln(os.Stderr, "ocimage:", err)
		os.Exit(1)
	}
}

func run(name, out, entrypoint, arch string, adds []string) error {
	layer, diffID, err := buildLayer(adds)
	if err != nil {
		return err
	}
	blobs := map[string][]byte{}
	put := func(mediaType string, data []byte) descriptor {
		d := digest(data)
		blobs[d] = data
		return descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}
	}
	layerDesc := put("application/vnd.oci.image.layer.v1.tar+gzip", layer)

	imgConfig := map[string]any{"Env": []string{"PATH=/"}}
	if entrypoint != "" {
		imgConfig["Entrypoint"] = []string{entrypoint}
	}
	config := mustJSON(map[string]any{
		"created":      epoch.Format(time.RFC3339),
		"architecture": arch,
		"os":           "linux",
		"config":       imgConfig,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{diffID}},
		"history":      []map[string]any{{"created": epoch.Format(time.RFC3339), "created_by": "ocimage"}},
	})
	configDesc := put("application/vnd.oci.image.config.v1+json", config)

	manifest := mustJSON(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        configDesc,
		"layers":        []descriptor{layerDesc},
	})
	manifestDesc := put("application/vnd.oci.image.manifest.v1+json", manifest)
	// containerd names the imported image after io.containerd.image.name; other tools read
	// the OCI ref.name (the tag).
	manifestDesc.Annotations = map[string]string{
		"io.containerd.image.name":          name,
		"org.opencontainers.image.ref.name": tagOf(name),
	}
	index := mustJSON(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     []descriptor{manifestDesc},
	})

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	writeFile(tw, "oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	writeFile(tw, "index.json", index, 0o644)
	writeDir(tw, "blobs/")
	writeDir(tw, "blobs/sha256/")
	digests := make([]string, 0, len(blobs))
	for d := range blobs {
		digests = append(digests, d)
	}
	sort.Strings(digests)
	for _, d := range digests {
		writeFile(tw, "blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), blobs[d], 0o644)
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return os.WriteFile(out, buf.Bytes(), 0o644)
}

// buildLayer returns the gzip-compressed layer and the digest of its uncompressed tar
// (the diff ID the image config must list).
func buildLayer(adds []string) ([]byte, string, error) {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	dirs := map[string]bool{}
	sort.Strings(adds)
	for _, a := range adds {
		src, dest, ok := strings.Cut(a, ":")
		if !ok || !strings.HasPrefix(dest, "/") {
			return nil, "", fmt.Errorf("-add %q: want SRC:/DEST", a)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, "", err
		}
		st, err := os.Stat(src)
		if err != nil {
			return nil, "", err
		}
		rel := strings.TrimPrefix(path.Clean(dest), "/")
		// Parent directories first, as tar consumers expect.
		for d := path.Dir(rel); d != "."; d = path.Dir(d) {
			if !dirs[d] {
				dirs[d] = true
				writeDir(tw, d+"/")
			}
		}
		writeFile(tw, rel, data, int64(st.Mode().Perm()))
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	diffID := digest(raw.Bytes())

	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	zw.ModTime = epoch
	zw.Write(raw.Bytes())
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return gz.Bytes(), diffID, nil
}

func writeFile(tw *tar.Writer, name string, data []byte, mode int64) {
	must(tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)),
		Mode: mode, ModTime: epoch, Format: tar.FormatPAX}))
	_, err := tw.Write(data)
	must(err)
}

func writeDir(tw *tar.Writer, name string) {
	must(tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755,
		ModTime: epoch, Format: tar.FormatPAX}))
}

func tagOf(ref string) string {
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[i+1:]
	}
	return "latest"
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	must(err)
	return b
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "ocimage:", err)
		os.Exit(1)
	}
}
