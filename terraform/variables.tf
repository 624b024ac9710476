# Inputs. Every variable is typed, described and, where a bad value would only fail late in the cloud
# API, validated here so that `terraform plan` rejects it up front.

# --- project and cluster ---------------------------------------------------------------------------

variable "project_id" {
  type        = string
  description = "GCP project that holds the cluster, the bucket and the service accounts."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project ID: 6-30 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  type        = string
  description = "GCP region of the (regional) cluster, its network and the artifact bucket, e.g. us-central1."
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a GCP region name such as us-central1 or europe-west4 (not a zone)."
  }
}

variable "cluster_name" {
  type        = string
  description = "Name of the GKE cluster; also the prefix of the network, node pools and service accounts."
  default     = "flexrl"

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,18}[a-z0-9])?$", var.cluster_name))
    error_message = "cluster_name must be 1-20 lowercase letters, digits or hyphens, start with a letter and not end with a hyphen (it prefixes service account IDs, which are limited to 30 characters)."
  }
}

variable "release_channel" {
  type        = string
  description = "GKE release channel: the control plane and nodes are upgraded automatically along it."
  default     = "REGULAR"

  validation {
    condition     = contains(["RAPID", "REGULAR", "STABLE"], var.release_channel)
    error_message = "release_channel must be one of RAPID, REGULAR, STABLE."
  }
}

variable "deletion_protection" {
  type        = bool
  description = "Refuse `terraform destroy` of the cluster and of a non-empty artifact bucket. Set to false only to tear everything down."
  default     = true
}

variable "labels" {
  type        = map(string)
  description = "Extra GCP labels put on every resource that supports them (merged with app = flexrl)."
  default     = {}

  validation {
    condition = alltrue([
      for k, v in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))
    ])
    error_message = "labels keys must match ^[a-z][a-z0-9_-]{0,62}$ and values ^[a-z0-9_-]{0,63}$ (GCP label rules)."
  }
}

# --- network ---------------------------------------------------------------------------------------

variable "subnet_cidr" {
  type        = string
  description = "Primary range of the cluster subnet (node IPs)."
  default     = "10.10.0.0/20"

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0))
    error_message = "subnet_cidr must be an IPv4 CIDR block such as 10.10.0.0/20."
  }
}

variable "pods_cidr" {
  type        = string
  description = "Secondary subnet range for pod IPs (VPC-native cluster)."
  default     = "10.20.0.0/14"

  validation {
    condition     = can(cidrhost(var.pods_cidr, 0))
    error_message = "pods_cidr must be an IPv4 CIDR block such as 10.20.0.0/14."
  }
}

variable "services_cidr" {
  type        = string
  description = "Secondary subnet range for Service ClusterIPs."
  default     = "10.30.0.0/20"

  validation {
    condition     = can(cidrhost(var.services_cidr, 0))
    error_message = "services_cidr must be an IPv4 CIDR block such as 10.30.0.0/20."
  }
}

variable "master_ipv4_cidr_block" {
  type        = string
  description = "The /28 range GKE uses for the private control-plane endpoint; must not overlap the subnet ranges."
  default     = "172.16.0.32/28"

  validation {
    condition     = can(cidrhost(var.master_ipv4_cidr_block, 0)) && endswith(var.master_ipv4_cidr_block, "/28")
    error_message = "master_ipv4_cidr_block must be an IPv4 /28 block such as 172.16.0.32/28."
  }
}

variable "master_authorized_networks" {
  type = list(object({
    cidr_block   = string
    display_name = string
  }))
  description = "Networks allowed to reach the Kubernetes API (nodes are private; the endpoint is public but restricted to these). Must include where Terraform and `flexrl submit` run from."

  validation {
    condition     = length(var.master_authorized_networks) > 0
    error_message = "master_authorized_networks needs at least one network: Terraform itself must reach the API to install the Helm release."
  }
  validation {
    condition     = alltrue([for n in var.master_authorized_networks : can(cidrhost(n.cidr_block, 0)) && n.cidr_block != "0.0.0.0/0"])
    error_message = "Every master_authorized_networks cidr_block must be a valid IPv4 CIDR and not 0.0.0.0/0 (that would expose the API to the internet)."
  }
}

# --- node pools ------------------------------------------------------------------------------------

variable "system_machine_type" {
  type        = string
  description = "Machine type of the always-on CPU pool (MLflow, system pods, CPU jobs)."
  default     = "e2-standard-4"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]*-[a-z0-9-]+$", var.system_machine_type))
    error_message = "system_machine_type must be a Compute Engine machine type such as e2-standard-4."
  }
}

variable "system_min_nodes" {
  type        = number
  description = "Minimum nodes per zone of the CPU pool (at least 1 so the cluster's own pods always have a home)."
  default     = 1

  validation {
    condition     = var.system_min_nodes >= 1 && floor(var.system_min_nodes) == var.system_min_nodes
    error_message = "system_min_nodes must be a whole number >= 1."
  }
}

variable "system_max_nodes" {
  type        = number
  description = "Maximum nodes per zone of the CPU pool."
  default     = 3

  validation {
    condition     = var.system_max_nodes >= var.system_min_nodes && floor(var.system_max_nodes) == var.system_max_nodes
    error_message = "system_max_nodes must be a whole number >= system_min_nodes."
  }
}

variable "gpu_machine_type" {
  type        = string
  description = "Machine type of the GPU pool; must fit gpu_type and gpu_count (g2-standard-* for L4, a2-* for A100, a3-* for H100)."
  default     = "g2-standard-8"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]*-[a-z0-9-]+$", var.gpu_machine_type))
    error_message = "gpu_machine_type must be a Compute Engine machine type such as g2-standard-8."
  }
}

variable "gpu_type" {
  type        = string
  description = "GKE accelerator type of the GPU pool (also its node label cloud.google.com/gke-accelerator), e.g. nvidia-l4, nvidia-tesla-a100, nvidia-h100-80gb."
  default     = "nvidia-l4"

  validation {
    condition     = can(regex("^nvidia-[a-z0-9-]+$", var.gpu_type))
    error_message = "gpu_type must be a GKE NVIDIA accelerator name such as nvidia-l4."
  }
}

variable "gpu_count" {
  type        = number
  description = "GPUs per GPU node; a pod of the inference server spans the GPUs of one node (tensor parallel)."
  default     = 1

  validation {
    condition     = contains([1, 2, 4, 8], var.gpu_count)
    error_message = "gpu_count must be 1, 2, 4 or 8."
  }
}

variable "gpu_zones" {
  type        = list(string)
  description = "Zones of the region that the GPU pool may use (GPU types are only offered in some zones)."
  default     = ["us-central1-a", "us-central1-c"]

  validation {
    condition     = length(var.gpu_zones) > 0 && alltrue([for z in var.gpu_zones : can(regex("^${var.region}-[a-z]$", z))])
    error_message = "gpu_zones must be a non-empty list of zones of region, e.g. [\"us-central1-a\"] for region us-central1."
  }
}

variable "gpu_max_nodes" {
  type        = number
  description = "Upper bound on GPU nodes across all gpu_zones. The pool scales between 0 and this: no GPU is paid for while no GPU pod is pending or running."
  default     = 4

  validation {
    condition     = var.gpu_max_nodes >= 1 && var.gpu_max_nodes <= 64 && floor(var.gpu_max_nodes) == var.gpu_max_nodes
    error_message = "gpu_max_nodes must be a whole number between 1 and 64."
  }
}

variable "gpu_spot" {
  type        = bool
  description = "Use Spot VMs for the GPU pool (much cheaper, can be preempted; jobs are retried by the Job's backoffLimit)."
  default     = true
}

variable "gpu_disk_size_gb" {
  type        = number
  description = "Boot disk size of GPU nodes in GB (holds the CUDA image and model weights)."
  default     = 200

  validation {
    condition     = var.gpu_disk_size_gb >= 50 && var.gpu_disk_size_gb <= 2000
    error_message = "gpu_disk_size_gb must be between 50 and 2000."
  }
}

# --- artifact bucket -------------------------------------------------------------------------------

variable "bucket_name" {
  type        = string
  description = "Name of the artifact bucket (MLflow artifacts, output notebooks). null derives <project_id>-<cluster_name>-artifacts."
  default     = null

  validation {
    condition     = var.bucket_name == null || can(regex("^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be 3-63 lowercase letters, digits, hyphens or underscores, starting and ending with a letter or digit."
  }
}

variable "bucket_noncurrent_days" {
  type        = number
  description = "Days a replaced or deleted artifact version is kept (the bucket is versioned) before it is removed."
  default     = 30

  validation {
    condition     = var.bucket_noncurrent_days >= 1 && floor(var.bucket_noncurrent_days) == var.bucket_noncurrent_days
    error_message = "bucket_noncurrent_days must be a whole number >= 1."
  }
}

variable "bucket_kms_key_name" {
  type        = string
  description = "Optional Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K) to encrypt the bucket with; null uses Google-managed keys."
  default     = null

  validation {
    condition     = var.bucket_kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.bucket_kms_key_name))
    error_message = "bucket_kms_key_name must be a full Cloud KMS key name projects/P/locations/L/keyRings/R/cryptoKeys/K."
  }
}

# --- Helm release of k8s/flexrl --------------------------------------------------------------------

variable "namespace" {
  type        = string
  description = "Kubernetes namespace of the Helm release (created if missing)."
  default     = "flexrl"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a DNS-1123 label: lowercase letters, digits and hyphens, at most 63 characters."
  }
}

variable "release_name" {
  type        = string
  description = "Name of the Helm release of k8s/flexrl."
  default     = "flexrl"

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,51}[a-z0-9])?$", var.release_name))
    error_message = "release_name must be a Helm release name: lowercase letters, digits and hyphens, at most 53 characters, starting with a letter."
  }
}

variable "kubernetes_service_account" {
  type        = string
  description = "Kubernetes ServiceAccount the chart's pods run as; Workload Identity maps it to the Google service account that may write the bucket."
  default     = "flexrl"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.kubernetes_service_account))
    error_message = "kubernetes_service_account must be a DNS-1123 label."
  }
}

variable "image_repository" {
  type        = string
  description = "Container image repository of flexrl (e.g. us-docker.pkg.dev/PROJECT/flexrl/flexrl); null keeps the chart's default."
  default     = null

  validation {
    condition     = var.image_repository == null || can(regex("^[a-z0-9][a-z0-9./_-]*[a-z0-9]$", var.image_repository))
    error_message = "image_repository must be an image reference without tag, e.g. us-docker.pkg.dev/my-project/flexrl/flexrl."
  }
}

variable "image_tag" {
  type        = string
  description = "Container image tag of flexrl; null keeps the chart's default. `latest` is refused so that runs stay reproducible."
  default     = null

  validation {
    condition     = var.image_tag == null || (can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest")
    error_message = "image_tag must be a valid tag other than latest (pin a version or digest-like tag)."
  }
}

variable "inference_enabled" {
  type        = bool
  description = "Deploy the chart's inference server (it runs on the GPU pool, so it keeps at least one GPU node up)."
  default     = false
}

variable "mlflow_tracking_uri" {
  type        = string
  description = "External MLflow tracking server URI. null deploys the chart's own MLflow server, with its artifacts in the bucket."
  default     = null

  validation {
    condition     = var.mlflow_tracking_uri == null || can(regex("^https?://[^ ]+$", var.mlflow_tracking_uri))
    error_message = "mlflow_tracking_uri must be an http:// or https:// URL."
  }
}

variable "chart_path" {
  type        = string
  description = "Directory of the flexrl Helm chart to install; null: the repository's k8s/flexrl next to this directory."
  default     = null

  validation {
    condition     = var.chart_path == null || fileexists("${coalesce(var.chart_path, ".")}/Chart.yaml")
    error_message = "chart_path must be a chart directory (holding Chart.yaml)."
  }
}
