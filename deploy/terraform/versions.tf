terraform {
  # 1.9: a variable's validation may name another variable.
  required_version = ">= 1.9"
  required_providers {
    aws = {
      source = "hashicorp/aws"
      # ipam_pool_id on aws_eip, and aws_eks_pod_identity_association.
      version = ">= 5.77"
    }
  }
}
