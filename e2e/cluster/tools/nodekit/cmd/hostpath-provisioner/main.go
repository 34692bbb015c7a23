// Command hostpath-provisioner gives the one-node e2e cluster dynamic volumes: every
// PersistentVolumeClaim of a StorageClass whose provisioner is -name gets a directory under
// -root and a hostPath PersistentVolume bound to it; a released volume whose reclaim policy
// is Delete loses both. It runs as a host process with the admin kubeconfig.
//
// It polls instead of watching: the test cluster has a handful of claims, and a poll loop
// has no reconnect or resync edge cases.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	annProvisioner       = "volume.kubernetes.io/storage-provisioner"
	annProvisionerLegacy = "volume.beta.kubernetes.io/storage-provisioner"
	annProvisionedBy     = "pv.kubernetes.io/provisioned-by"
)

type provisioner struct {
	client kubernetes.Interface
	name   string
	root   string
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of a user allowed to manage PVs")
	name := flag.String("name", "riffle.local/hostpath", "provisioner name StorageClasses refer to")
	root := flag.String("root", "", "directory that holds the volumes (required)")
	interval := flag.Duration("interval", time.Second, "poll interval")
	flag.Parse()
	if *root == "" {
		log.Fatal("-root is required")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.MkdirAll(*root, 0o755); err != nil {
		log.Fatal(err)
	}
	p := &provisioner{client: kubernetes.NewForConfigOrDie(cfg), name: *name, root: *root}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Printf("provisioning %s volumes under %s", p.name, p.root)
	for {
		if err := p.sync(ctx); err != nil && ctx.Err() == nil {
			log.Printf("sync: %v", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(*interval):
		}
	}
}

func (p *provisioner) sync(ctx context.Context) error {
	claims, err := p.client.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range claims.Items {
		c := &claims.Items[i]
		if c.Spec.VolumeName != "" || c.Status.Phase != corev1.ClaimPending || c.DeletionTimestamp != nil {
			continue
		}
		// The PV controller sets this annotation once it has matched the claim's class to us.
		if c.Annotations[annProvisioner] != p.name && c.Annotations[annProvisionerLegacy] != p.name {
			continue
		}
		if err := p.provision(ctx, c); err != nil {
			log.Printf("provision %s/%s: %v", c.Namespace, c.Name, err)
		}
	}
	vols, err := p.client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range vols.Items {
		v := &vols.Items[i]
		if v.Annotations[annProvisionedBy] == p.name && v.Status.Phase == corev1.VolumeReleased &&
			v.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimDelete {
			if err := p.remove(ctx, v); err != nil {
				log.Printf("delete %s: %v", v.Name, err)
			}
		}
	}
	return nil
}

func (p *provisioner) provision(ctx context.Context, c *corev1.PersistentVolumeClaim) error {
	if c.Spec.StorageClassName == nil {
		return fmt.Errorf("claim has no storage class")
	}
	class, err := p.client.StorageV1().StorageClasses().Get(ctx, *c.Spec.StorageClassName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if class.VolumeBindingMode != nil && *class.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer &&
		c.Annotations["volume.kubernetes.io/selected-node"] == "" {
		return nil // the scheduler has not placed a consumer yet
	}
	name := "pvc-" + string(c.UID)
	dir := filepath.Join(p.root, fmt.Sprintf("%s_%s_%s", c.Namespace, c.Name, c.UID))
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	// Pods may run as any user; the volume is a scratch directory on a test node.
	if err := os.Chmod(dir, 0o777); err != nil {
		return err
	}
	reclaim := corev1.PersistentVolumeReclaimDelete
	if class.ReclaimPolicy != nil {
		reclaim = *class.ReclaimPolicy
	}
	hostPathType := corev1.HostPathDirectoryOrCreate
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{annProvisionedBy: p.name},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: c.Spec.Resources.Requests[corev1.ResourceStorage]},
			AccessModes:                   c.Spec.AccessModes,
			VolumeMode:                    c.Spec.VolumeMode,
			PersistentVolumeReclaimPolicy: reclaim,
			StorageClassName:              class.Name,
			MountOptions:                  class.MountOptions,
			ClaimRef: &corev1.ObjectReference{
				Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: c.Namespace, Name: c.Name, UID: c.UID,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &hostPathType},
			},
		},
	}
	_, err = p.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err == nil {
		log.Printf("provisioned %s for %s/%s at %s", name, c.Namespace, c.Name, dir)
	}
	return err
}

func (p *provisioner) remove(ctx context.Context, v *corev1.PersistentVolume) error {
	if v.Spec.HostPath != nil {
		dir := filepath.Clean(v.Spec.HostPath.Path)
		// Never delete anything outside our root, whatever a PV object claims.
		if !strings.HasPrefix(dir, filepath.Clean(p.root)+string(filepath.Separator)) {
			return fmt.Errorf("refusing to remove %s: not under %s", dir, p.root)
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	err := p.client.CoreV1().PersistentVolumes().Delete(ctx, v.Name, metav1.DeleteOptions{})
	if err == nil || apierrors.IsNotFound(err) {
		log.Printf("deleted %s", v.Name)
		return nil
	}
	return err
}
