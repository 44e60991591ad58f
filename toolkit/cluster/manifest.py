"""The same deployment on Kubernetes: a KServe InferenceService whose predictor is a custom container
running `toolkit serve-cluster` (Ray Serve inside the pod, Open Inference Protocol v2 on port 8080).

KServe runs custom predictors as a container of the user's image that serves HTTP on 8080; KServe's
own autoscaler adds pods (min/max replicas), and inside each pod Ray Serve runs the replicas. The
alternative, `toolkit export --format triton` with the `kserve-tritonserver` runtime, needs a Triton
build with the onnxruntime backend; this one needs only an image with the toolkit, its `cluster`
extra and the model files (the image is the user's to build: no Kubernetes can run on these
machines, so the manifest is checked against KServe's own types in the tests, never applied here).
"""

from __future__ import annotations

from toolkit.backends.triton import model_name

CONTAINER_PORT = 8080  # what KServe routes to in a custom predictor


def kserve_ray_manifest(name: str, pairs: tuple[tuple[str, str], ...], replicas: int = 1, min_pods: int = 1, max_pods: int = 4,
                        cpus: int = 2, image: str = "TOOLKIT_IMAGE") -> str:
    """The InferenceService as YAML text; IMAGE and the model files are the user's to provide."""
    backends = ",".join(sorted({b for b, _ in pairs}))
    precisions = ",".join(sorted({p for _, p in pairs}))
    models = ", ".join(model_name(b, p) for b, p in pairs)
    return f"""# KServe InferenceService: a custom predictor running `toolkit serve-cluster` (Ray Serve in the pod,
# Open Inference Protocol v2 over HTTP on {CONTAINER_PORT}). Models: {models}
# Before applying: build an image with the toolkit (pip install '.[cluster]') and its artifacts/ in
# the working directory, and replace {image} below. KServe scales pods between minReplicas and
# maxReplicas; Ray Serve runs --replicas replicas inside each pod.
# Check after deploying: toolkit eval --backend triton --url http://<ingress-host>:80 --model {model_name(*pairs[0])}
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {name}
spec:
  predictor:
    minReplicas: {min_pods}
    maxReplicas: {max_pods}
    containers:
      - name: kserve-container
        image: {image}
        command: ["toolkit", "serve-cluster"]
        args: ["--backend", "{backends}", "--precision", "{precisions}", "--host", "0.0.0.0", "--port", "{CONTAINER_PORT}",
               "--nodes", "1", "--cpus-per-node", "{cpus}", "--replicas", "{replicas}"]
        ports:
          - containerPort: {CONTAINER_PORT}
            protocol: TCP
        readinessProbe:
          httpGet:
            path: /v2/health/ready
            port: {CONTAINER_PORT}
          periodSeconds: 5
        resources:
          requests:
            cpu: "{cpus}"
            memory: 4Gi
          limits:
            cpu: "{cpus}"
            memory: 4Gi
"""
