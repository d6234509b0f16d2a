# Shared by the VM scripts: a loopback kernel NFS server with two tmpfs exports, an NFSv3
# mount at /srv/nas-a (server 127.0.0.1) and an NFSv4.2 mount at /srv/nas-b (127.0.0.2).
# Source it; call nfs_up after the nfs client module is loaded (or let it load it).

nfs_up() {
	modprobe nfsd && modprobe nfs && modprobe nfsv3 && modprobe nfsv4 || return 1
	mount -t nfsd nfsd /proc/fs/nfsd
	# Exports must be tmpfs: the guest's 9p and overlay file systems cannot be exported.
	mkdir -p /srv/v4 && mount -t tmpfs -o size=512m tmpfs /srv/v4
	mkdir -p /srv/v4/exa /srv/v4/exb
	mount -t tmpfs -o size=512m tmpfs /srv/v4/exa
	mount -t tmpfs -o size=512m tmpfs /srv/v4/exb
	cat >/etc/exports <<EOX
/srv/v4 127.0.0.0/8(rw,fsid=0,crossmnt,no_root_squash,no_subtree_check,insecure)
/srv/v4/exa 127.0.0.0/8(rw,fsid=1,no_root_squash,no_subtree_check,insecure)
/srv/v4/exb 127.0.0.0/8(rw,fsid=2,no_root_squash,no_subtree_check,insecure)
EOX
	rpcbind -w && exportfs -ra && rpc.mountd && rpc.nfsd 8 || return 1
	mkdir -p /srv/nas-a /srv/nas-b
	mount -t nfs -o vers=3,tcp,nolock,rsize=65536,wsize=65536 127.0.0.1:/srv/v4/exa /srv/nas-a
	mount -t nfs -o vers=4.2,rsize=65536,wsize=65536 127.0.0.2:/exb /srv/nas-b
	# A failed mount leaves a plain directory behind: check.
	mountpoint -q /srv/nas-a && mountpoint -q /srv/nas-b
}
