output "node_role_arn" {
  description = "The media pods' role: the chart's serviceAccount.roleArn with IRSA (associated by this module with Pod Identity)."
  value       = aws_iam_role.node.arn
}

output "operator_role_arn" {
  description = "The operators' role (null without operator_principal_arns)."
  value       = one(aws_iam_role.operator[*].arn)
}

output "addresses" {
  description = "The pool's public IPv4 addresses (published first, then unpublished, then those tagged in)."
  value = concat(
    aws_eip.published[*].public_ip,
    aws_eip.unpublished[*].public_ip,
    [for id in var.existing_allocation_ids : data.aws_eip.existing[id].public_ip],
  )
}

output "published_addresses" {
  description = "The addresses to send customers' firewall admins."
  value       = aws_eip.published[*].public_ip
}

output "cidrs" {
  description = "What to send customers: the IPAM pool's CIDRs when allocating from one, else each published address as a /32 (`eipool --pool NAME status --cidrs` collapses a live pool to its smallest list)."
  value = (var.ipam_pool_id == null
    ? [for ip in aws_eip.published[*].public_ip : "${ip}/32"]
  : [for c in data.aws_vpc_ipam_pool_cidrs.pool[0].ipam_pool_cidrs : c.cidr if c.state == "provisioned"])
}

output "helm_values" {
  description = "The values of charts/eipool that this module decides (pass with helm --set, or merge into your values file)."
  value = {
    pool = var.pool_name
    serviceAccount = {
      name = var.service_account
      # With Pod Identity the association, not an annotation, gives the pods the role.
      roleArn = var.node_trust == "irsa" ? aws_iam_role.node.arn : ""
    }
  }
}

output "helm_set_args" {
  description = "The same as helm --set arguments."
  value = join(" ", [
    "--set pool=${var.pool_name}",
    "--set serviceAccount.name=${var.service_account}",
    "--set serviceAccount.roleArn=${var.node_trust == "irsa" ? aws_iam_role.node.arn : ""}",
  ])
}
