# Terraform and provider versions. 1.9+ is needed because variable validations refer to other
# variables (gpu_zones must lie in region, system_max_nodes >= system_min_nodes).
terraform {
  required_version = ">= 1.9.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.0"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "~> 3.0"
    }
  }
}
