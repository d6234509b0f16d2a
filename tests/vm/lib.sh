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

# Polling waits. wait_until runs a condition every 0.1 s until it holds; after the limit it
# appends "timeout <phase> <what> after <n> s" to $WAIT_LOG (the guest's expect.txt) and
# fails. Nothing here waits a fixed time for the agent.
wait_until() { # seconds what condition...
	local limit=$1 what=$2 end=$((SECONDS + $1)) start=$SECONDS xtrace=${-//[^x]/}
	shift 2
	set +x # a trace line per poll would bury the log
	until "$@"; do
		if ((SECONDS >= end)); then
			echo "timeout ${PHASE:--} $what after $limit s" >>"${WAIT_LOG:-/dev/stderr}"
			echo "timed out after $limit s: $what" >&2
			[ -n "$xtrace" ] && set -x
			return 1
		fi
		sleep 0.1
	done
	echo "waited $((SECONDS - start)) s: $what" >&2
	[ -n "$xtrace" ] && set -x
	return 0
}

# Conditions for wait_until.
jsonl_seq() { # file: seq of the newest interval nasflow's jsonl shows in full (its health line, the interval's last), 0 if none
	local s
	# Not anchored: tac glues a partly written last line to the one before it.
	s=$(tac "$1" 2>/dev/null | grep -m1 -o '{"kind":"health","seq":[0-9]*,' | head -n1 | tr -dc 0-9)
	echo "${s:-0}"
}
seq_at_least() { # file n: the jsonl shows interval n in full
	(($(jsonl_seq "$1") >= $2))
}
wait_seq() { # file n seconds what
	wait_until "$3" "$4" seq_at_least "$1" "$2"
}
file_size() { # file
	stat -c %s "$1" 2>/dev/null || echo 0
}
has_line() { # file regex [byte offset]: a line matching the (basic) regex, past the offset
	if [ -n "${3:-}" ]; then
		tail -c +$(($3 + 1)) "$1" 2>/dev/null | grep -q -- "$2"
	else # newest lines first: what is waited for is usually near the end of a long file
		tac "$1" 2>/dev/null | grep -q -- "$2"
	fi
}
listening() { # port: a TCP socket listens on it
	ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}
running() { # pid: the process exists and is not a zombie
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	[ "$(cut -d' ' -f1 <<<"${stat##*) }")" != Z ]
}
not_running() { # pid
	! running "$1"
}
