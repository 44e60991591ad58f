"""`toolkit serve-cluster`: the toolkit's models on a Ray cluster, as Ray Serve deployments behind an
Open Inference Protocol v2 HTTP endpoint that the `triton` client backend (and so `toolkit eval
--backend triton` and `toolkit bench --url`) talks to unchanged.

Modules: `config` (what is deployed and reported), `deploy` (check, connect or start a cluster, deploy, take down), `nodes` (a local
multi-node Ray cluster owned by one temp dir), `app` (the Ray Serve deployments; imports Ray),
`protocol` (v2 request and response bodies), `manifest` (the KServe manifest for Ray/custom
predictors). Ray is imported only inside `app` and the functions that need it.
"""
