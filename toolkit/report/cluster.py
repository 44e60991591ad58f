"""Console text for `toolkit serve-cluster`: the endpoint, the models and where each replica runs."""

from __future__ import annotations

from toolkit.report.tables import table


def format_cluster_info(info) -> str:
    where = "a local Ray cluster started for this deployment" if info.started_cluster else "the Ray cluster"
    lines = [f"Ray Serve {info.ray_version} on {where} at {info.address}: {len(info.nodes)} nodes, "
             f"deployed in {info.deploy_seconds:.1f}s",
             f"endpoint (Open Inference Protocol v2, HTTP): {info.http_url}",
             *([f"local cluster's temp dir (logs; every process of it names this): {info.temp_dir}"] if info.temp_dir else []),
             table(["model", "precision", "file", "sha256"], [[m.name, m.precision, m.path, m.sha256[:12]] for m in info.models],
                   align="llll"),
             table(["model", "replica", "node"], [[r.model, r.replica.rsplit("#", 1)[-1], r.node] for r in info.replicas], align="lll")]
    if info.models:
        m = info.models[0]
        lines.append(f"check it: toolkit eval --backend triton --url {info.http_url} --model {m.name} --precision {m.precision}")
    lines.append("ready; Ctrl-C or SIGTERM removes the deployment" + (" and stops the cluster" if info.started_cluster else ""))
    return "\n".join(lines)


def format_cluster_stop(report) -> str:
    left = "nothing left running" if report.clean else f"LEFT RUNNING: processes {list(report.leftover_processes)}"
    what = "deployment removed and local cluster stopped" if report.started_cluster else "deployment removed"
    return f"{what} in {report.seconds:.1f}s; {left}"
