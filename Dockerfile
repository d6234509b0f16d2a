# nasflow's image: clang builds the BPF programs (crates/probe-bpf/build.rs) and the agent in
# one stage; the runtime stage is a slim Debian with the binary only. The container needs no
# privileges of its own: the DaemonSet grants CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE
# (charts/nasflow). Build: docker build -t nasflow .
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends clang libbpf-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin nasflow && strip target/release/nasflow

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/nasflow /usr/local/bin/nasflow
# Root without capabilities of its own: reading the host's /proc/1/mountinfo and cgroup tree
# needs uid 0; everything kernel-side comes from the capabilities the pod spec adds.
USER 0
ENTRYPOINT ["/usr/local/bin/nasflow"]
CMD ["run"]
