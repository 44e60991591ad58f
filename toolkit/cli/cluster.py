"""`toolkit serve-cluster` (Ray Serve)."""

from __future__ import annotations

import click

from toolkit.cli.group import _artifacts_option, _checkpoint_option, _split_list, cli


@cli.command("serve-cluster")
@click.option("--backend", "backends", default="onnxruntime", show_default=True, help="Comma-separated in-process backends to deploy.")
@click.option("--precision", "precisions", default="fp32", show_default=True, help="Comma-separated precisions; every backend x precision is deployed.")
@click.option("--address", default=None,
              help="The Ray cluster: auto, HOST:PORT (the head's GCS port) or ray://HOST:PORT. Omitted: start a local cluster of --nodes nodes and stop it at exit.")
@click.option("--nodes", type=int, default=1, show_default=True, help="Local cluster only: Ray nodes to start on this machine (head + workers).")
@click.option("--cpus-per-node", type=float, default=1.0, show_default=True, help="Local cluster only: CPUs each node offers Ray.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address Serve's HTTP proxy binds on the head node.")
@click.option("--port", type=int, default=8000, show_default=True, help="HTTP port of the endpoint (0: any free port).")
@click.option("--replicas", type=int, default=1, show_default=True, help="Replicas per model (fixed).")
@click.option("--min-replicas", type=int, default=None, help="Autoscaling: fewest replicas per model (with --max-replicas).")
@click.option("--max-replicas", type=int, default=None, help="Autoscaling: most replicas per model.")
@click.option("--replica-cpus", type=float, default=0.5, show_default=True, help="CPUs Ray reserves for each replica.")
@click.option("--threads", type=int, default=1, show_default=True, help="Threads of each replica's backend session.")
@click.option("--max-batch", type=int, default=1024, show_default=True, help="Largest batch a request may send.")
@click.option("--kserve-manifest", type=click.Path(dir_okay=False), default=None,
              help="Write a KServe InferenceService that runs this command as a custom predictor to FILE, and exit.")
@_checkpoint_option
@_artifacts_option
def serve_cluster(backends, precisions, address, nodes, cpus_per_node, host, port, replicas, min_replicas, max_replicas, replica_cpus,
                  threads, max_batch, kserve_manifest, checkpoint, artifacts_dir):
    """Deploy (backend, precision) pairs to a Ray cluster (Ray Serve) behind an Open Inference Protocol v2
    endpoint until Ctrl-C or SIGTERM; `toolkit eval --backend triton --url ...` and `toolkit bench --url ...` use it."""
    from toolkit.cluster.deploy import ClusterConfig, run_cluster
    from toolkit.report.cluster import format_cluster_info, format_cluster_stop

    pairs = tuple((b, p) for b in (_split_list(backends, "backend") or ["onnxruntime"])
                  for p in (_split_list(precisions, "precision") or ["fp32"]))
    config = ClusterConfig(pairs=pairs, address=address, nodes=nodes, cpus_per_node=cpus_per_node, host=host, port=port,
                           replicas=replicas, min_replicas=min_replicas, max_replicas=max_replicas, replica_cpus=replica_cpus,
                           threads=threads, max_batch=max_batch, artifacts_dir=artifacts_dir, checkpoint=checkpoint)
    if kserve_manifest:
        from pathlib import Path

        from toolkit.cluster.manifest import kserve_ray_manifest
        from toolkit.files.store import write_text_artifact

        name = "".join(c if c.isalnum() else "-" for c in Path(kserve_manifest).name.split(".")[0].lower()).strip("-") or "toolkit"
        text = kserve_ray_manifest(name[:63], pairs, replicas=replicas)
        click.echo(f"KServe InferenceService (custom predictor, Ray Serve in the pod): {write_text_artifact(kserve_manifest, text, kind='kserve-inferenceservice')}")
        return
    report = run_cluster(config, on_ready=lambda info: click.echo(format_cluster_info(info), nl=True))
    click.echo(format_cluster_stop(report))
