# Values derived from the variables alone (no resource or data references): tools/check_terraform.sh
# evaluates this file with variables.tf and no provider, and renders the chart with the Helm values below.

locals {
  base_labels = { app = "flexrl", cluster = var.cluster_name }
  labels      = merge(local.base_labels, var.labels)
  bucket_name = coalesce(var.bucket_name, "${var.project_id}-${var.cluster_name}-artifacts")
  bucket_uri  = "gs://${local.bucket_name}"

  # The Google service account of the chart's pods (google_service_account.workload), known before it exists.
  workload_sa_id    = "${var.cluster_name}-workload"
  workload_sa_email = "${local.workload_sa_id}@${var.project_id}.iam.gserviceaccount.com"

  # GKE labels GPU nodes with their accelerator and taints them nvidia.com/gpu=present:NoSchedule,
  # so only pods that ask for a GPU (and tolerate the taint) land there.
  gpu_node_selector = { "cloud.google.com/gke-accelerator" = var.gpu_type }
  gpu_tolerations   = [{ key = "nvidia.com/gpu", operator = "Exists", effect = "NoSchedule" }]

  chart_dir = coalesce(var.chart_path, "${path.module}/../k8s/flexrl")
  # The chart's fullname helper: the release name when it already contains the chart name.
  chart_fullname      = strcontains(var.release_name, "flexrl") ? var.release_name : "${var.release_name}-flexrl"
  in_chart_mlflow_uri = "http://${local.chart_fullname}-mlflow.${var.namespace}.svc:5000"
  mlflow_tracking_uri = coalesce(var.mlflow_tracking_uri, local.in_chart_mlflow_uri)
  # The in-chart MLflow server keeps its artifacts (runs' files, the executed notebooks `flexrl run` logs) in the
  # bucket, written as the Workload Identity service account; its volume keeps only the SQLite backend store.
  mlflow_artifacts_uri = "${local.bucket_uri}/mlflow"

  # null image settings are left out so that the chart's defaults apply
  image_values = { for k, v in { repository = var.image_repository, tag = var.image_tag } : k => v if v != null }

  # Values of the Helm release (MLflow and, if enabled, the inference server).
  helm_values = {
    image = local.image_values
    serviceAccount = {
      create      = true
      name        = var.kubernetes_service_account
      annotations = { "iam.gke.io/gcp-service-account" = local.workload_sa_email } # Workload Identity
    }
    gpu = {
      nodeSelector = local.gpu_node_selector
      tolerations  = local.gpu_tolerations
    }
    job       = { enabled = false } # notebook Jobs are their own releases, made by `flexrl submit`
    inference = { enabled = var.inference_enabled, gpu = true, tp = var.gpu_count }
    mlflow = merge(
      { enabled = var.mlflow_tracking_uri == null, artifactsDestination = local.mlflow_artifacts_uri },
      var.mlflow_tracking_uri == null ? {} : { trackingUri = var.mlflow_tracking_uri },
    )
  }

  # Values for the notebook Jobs `flexrl submit` renders as their own releases in the same namespace: they
  # run as the Workload Identity ServiceAccount, go to the GPU pool and log to this release's MLflow.
  job_values = {
    image          = local.image_values
    serviceAccount = { create = false, name = var.kubernetes_service_account }
    gpu = {
      nodeSelector = local.gpu_node_selector
      tolerations  = local.gpu_tolerations
    }
    mlflow = { enabled = false, trackingUri = local.mlflow_tracking_uri }
  }
}
