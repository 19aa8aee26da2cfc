//! Elastic IPs on secondary private IPs, as EC2 maps them and moto does not: moto's
//! AssociateAddress ignores `PrivateIpAddress` and records every association on the interface's
//! primary private IP. The proxy remembers the private IP each association was asked for and
//! rewrites moto's answers to say what EC2 says:
//! - AssociateAddress with `PrivateIpAddress` maps the address to that private IP, replacing an
//!   Elastic IP already on that private IP and no other
//!   (<https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_AssociateAddress.html>: "you
//!   can specify the private IP address of the network interface … If you associate an Elastic
//!   IP address with an instance that has an existing Elastic IP address, the existing address
//!   is disassociated");
//! - DescribeAddresses reports that `PrivateIpAddress`, and its `private-ip-address` filter
//!   matches it (<https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeAddresses.html>);
//! - DescribeNetworkInterfaces shows each private IP's own `Association`, and the interface's
//!   `Association` is its primary private IP's
//!   (<https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_NetworkInterfacePrivateIpAddress.html>);
//! - the IMDS stand-in (`crate::imds`), reading addresses through the proxy, then lists
//!   `ipv4-associations/<public-ip>` → that private IP
//!   (<https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-categories.html>).

use std::collections::HashMap;
use std::sync::Mutex;

use super::upstream::Upstream;
use super::xml;

/// One Elastic IP on an interface, as EC2 would describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OnInterface {
    pub(super) allocation_id: String,
    pub(super) association_id: String,
    pub(super) public_ip: String,
    /// The private IP it maps to (EC2's, not moto's).
    pub(super) private_ip: String,
}

/// The private IP each association was made for, when it was not the primary.
#[derive(Debug, Default)]
pub(super) struct PrivateIps(Mutex<HashMap<String, String>>);

impl PrivateIps {
    /// After moto accepted an AssociateAddress: remember the private IP it was asked for.
    pub(super) fn associated(&self, params: &HashMap<String, String>, answer: &str) {
        if let (Some(ip), Some(assoc)) = (
            params.get("PrivateIpAddress"),
            xml::field(answer, "associationId"),
        ) {
            self.0.lock().unwrap().insert(assoc.to_string(), ip.clone());
        }
    }

    /// The private IP `association` maps to in EC2: the one it was made for, else moto's.
    fn of(&self, association: &str, moto_says: &str) -> String {
        self.0
            .lock()
            .unwrap()
            .get(association)
            .cloned()
            .unwrap_or_else(|| moto_says.to_string())
    }

    /// A DescribeAddresses item as EC2 would answer it (moto's with its private IP corrected).
    fn item(&self, item: &str) -> String {
        match (
            xml::field(item, "associationId"),
            xml::field(item, "privateIpAddress"),
        ) {
            (Some(assoc), Some(moto_says)) => item.replacen(
                &format!("<privateIpAddress>{moto_says}</privateIpAddress>"),
                &format!(
                    "<privateIpAddress>{}</privateIpAddress>",
                    self.of(assoc, moto_says)
                ),
                1,
            ),
            _ => item.to_string(),
        }
    }

    /// The Elastic IPs associated with `eni`, each with the private IP EC2 would show.
    pub(super) async fn on_interface(
        &self,
        upstream: &Upstream,
        headers: &hyper::HeaderMap,
        eni: &str,
    ) -> Option<Vec<OnInterface>> {
        let held = upstream
            .query(
                headers,
                "DescribeAddresses",
                &[
                    ("Filter.1.Name", "network-interface-id"),
                    ("Filter.1.Value.1", eni),
                ],
            )
            .await?;
        Some(
            xml::items(&held, "addressesSet")
                .into_iter()
                .filter_map(|item| {
                    let association_id = xml::field(item, "associationId")?.to_string();
                    Some(OnInterface {
                        allocation_id: xml::field(item, "allocationId")?.to_string(),
                        public_ip: xml::field(item, "publicIp")?.to_string(),
                        private_ip: self.of(
                            &association_id,
                            xml::field(item, "privateIpAddress").unwrap_or_default(),
                        ),
                        association_id,
                    })
                })
                .collect(),
        )
    }

    /// A DescribeAddresses answer as EC2 would give it: private IPs corrected, and a
    /// `private-ip-address` filter applied to the corrected values (moto applied it to its own,
    /// so the proxy asks moto again without it).
    pub(super) async fn describe_addresses(
        &self,
        upstream: &Upstream,
        headers: &hyper::HeaderMap,
        params: &HashMap<String, String>,
        answer: String,
    ) -> String {
        let (wanted, others) = split_private_ip_filter(params);
        let answer = match &wanted {
            None => answer,
            Some(_) => {
                let others: Vec<(&str, &str)> = others
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                match upstream.query(headers, "DescribeAddresses", &others).await {
                    Some(all) => all,
                    None => answer,
                }
            }
        };
        let items: Vec<String> = xml::items(&answer, "addressesSet")
            .into_iter()
            .map(|item| self.item(item))
            .filter(|item| match &wanted {
                None => true,
                Some(ips) => xml::field(item, "privateIpAddress")
                    .is_some_and(|ip| ips.iter().any(|w| w == ip)),
            })
            .collect();
        replace_set(&answer, "addressesSet", &items)
    }

    /// A DescribeNetworkInterfaces answer as EC2 would give it: each private IP's association,
    /// and the interface's association the primary private IP's.
    pub(super) async fn describe_interfaces(
        &self,
        upstream: &Upstream,
        headers: &hyper::HeaderMap,
        answer: String,
    ) -> String {
        let mut items = Vec::new();
        for item in xml::items(&answer, "networkInterfaceSet") {
            // The interface's own id: the item's last networkInterfaceId (an attachment names
            // none, but keep to the rule the terminate emulation uses).
            let eni = item
                .rfind("<networkInterfaceId>")
                .and_then(|i| xml::field(&item[i..], "networkInterfaceId"));
            let held = match eni {
                Some(eni) => self.on_interface(upstream, headers, eni).await,
                None => None,
            };
            items.push(match held {
                Some(held) => with_associations(item, &held),
                None => item.to_string(),
            });
        }
        replace_set(&answer, "networkInterfaceSet", &items)
    }
}

/// The values of a `private-ip-address` filter, if any, and the other parameters renumbered.
fn split_private_ip_filter(
    params: &HashMap<String, String>,
) -> (Option<Vec<String>>, Vec<(String, String)>) {
    let filter_of = |k: &str| -> Option<String> {
        let rest = k.strip_prefix("Filter.")?;
        Some(rest[..rest.find('.')?].to_string())
    };
    let Some(n) = params
        .iter()
        .find(|(k, v)| filter_of(k).is_some() && k.ends_with(".Name") && *v == "private-ip-address")
        .and_then(|(k, _)| filter_of(k))
    else {
        return (None, Vec::new());
    };
    let prefix = format!("Filter.{n}.");
    let mut values: Vec<String> = params
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{prefix}Value.")))
        .map(|(_, v)| v.clone())
        .collect();
    values.sort();
    let others = params
        .iter()
        .filter(|(k, _)| *k != "Action" && *k != "Version" && !k.starts_with(&prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (Some(values), others)
}

/// `answer` with the items of its list `set` replaced by `items`.
fn replace_set(answer: &str, set: &str, items: &[String]) -> String {
    let body: String = items.iter().map(|i| format!("<item>{i}</item>")).collect();
    let (open, close, empty) = (format!("<{set}>"), format!("</{set}>"), format!("<{set}/>"));
    match (answer.find(&open), answer.find(&close)) {
        (Some(s), Some(e)) => format!(
            "{}{open}{body}{close}{}",
            &answer[..s],
            &answer[e + close.len()..]
        ),
        _ if answer.contains(&empty) => answer.replacen(&empty, &format!("{open}{body}{close}"), 1),
        _ => answer.to_string(),
    }
}

/// One interface item of DescribeNetworkInterfaces with EC2's associations: each private IP's
/// own, and the interface's the primary private IP's (none when the primary has none).
fn with_associations(item: &str, held: &[OnInterface]) -> String {
    let shape = |a: &OnInterface| {
        format!(
            "<association><allocationId>{}</allocationId><associationId>{}</associationId><ipOwnerId>123456789012</ipOwnerId><publicIp>{}</publicIp></association>",
            a.allocation_id, a.association_id, a.public_ip
        )
    };
    // moto's top-level association (its last, on the primary IP whatever was asked) goes.
    let mut out = match (item.find("<association>"), item.find("</association>")) {
        (Some(s), Some(e)) if !item[..s].contains("<privateIpAddressesSet>") => {
            format!("{}{}", &item[..s], &item[e + "</association>".len()..])
        }
        _ => item.to_string(),
    };
    let primary = xml::field(&out, "privateIpAddress").map(str::to_string);
    let ips: Vec<String> = xml::items(&out, "privateIpAddressesSet")
        .into_iter()
        .map(|ip_item| {
            let ip = xml::field(ip_item, "privateIpAddress").unwrap_or_default();
            match held.iter().find(|a| a.private_ip == ip) {
                Some(a) if !ip_item.contains("<association>") => format!("{ip_item}{}", shape(a)),
                _ => ip_item.to_string(),
            }
        })
        .collect();
    out = replace_set(&out, "privateIpAddressesSet", &ips);
    match primary.and_then(|p| held.iter().find(|a| a.private_ip == p)) {
        Some(a) => format!("{}{out}", shape(a)),
        None => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(alloc: &str, ip: &str) -> OnInterface {
        OnInterface {
            allocation_id: format!("eipalloc-{alloc}"),
            association_id: format!("eipassoc-{alloc}"),
            public_ip: format!("198.51.100.{alloc}"),
            private_ip: ip.into(),
        }
    }

    const MOTO_ENI: &str = "<association><allocationId>eipalloc-3</allocationId><associationId>eipassoc-3</associationId><publicIp>198.51.100.3</publicIp></association><networkInterfaceId>eni-1</networkInterfaceId><privateIpAddress>10.0.0.1</privateIpAddress><privateIpAddressesSet><item><primary>true</primary><privateIpAddress>10.0.0.1</privateIpAddress></item><item><primary>false</primary><privateIpAddress>10.0.0.2</privateIpAddress></item><item><primary>false</primary><privateIpAddress>10.0.0.3</privateIpAddress></item></privateIpAddressesSet>";

    #[test]
    fn each_private_ip_shows_its_own_association_and_the_interface_the_primarys() {
        let out = with_associations(MOTO_ENI, &[held("1", "10.0.0.1"), held("3", "10.0.0.3")]);
        let wrapped = format!("<networkInterfaceSet><item>{out}</item></networkInterfaceSet>");
        let item = xml::items(&wrapped, "networkInterfaceSet")[0];
        // The interface's association is the primary IP's.
        assert_eq!(
            xml::field(xml::field(item, "association").unwrap(), "allocationId"),
            Some("eipalloc-1")
        );
        let per_ip: Vec<(Option<&str>, Option<&str>)> = xml::items(item, "privateIpAddressesSet")
            .into_iter()
            .map(|i| {
                (
                    xml::field(i, "privateIpAddress"),
                    xml::field(i, "association").and_then(|a| xml::field(a, "publicIp")),
                )
            })
            .collect();
        assert_eq!(
            per_ip,
            vec![
                (Some("10.0.0.1"), Some("198.51.100.1")),
                (Some("10.0.0.2"), None),
                (Some("10.0.0.3"), Some("198.51.100.3")),
            ]
        );
    }

    #[test]
    fn an_interface_whose_primary_holds_nothing_has_no_association_of_its_own() {
        let out = with_associations(MOTO_ENI, &[held("3", "10.0.0.3")]);
        assert!(
            out.starts_with("<networkInterfaceId>"),
            "moto's top-level association (on the primary, wrongly) goes: {out}"
        );
    }

    #[test]
    fn a_private_ip_filter_is_split_from_the_others() {
        let params: HashMap<String, String> = [
            ("Action", "DescribeAddresses"),
            ("Version", "2016-11-15"),
            ("Filter.1.Name", "network-interface-id"),
            ("Filter.1.Value.1", "eni-1"),
            ("Filter.2.Name", "private-ip-address"),
            ("Filter.2.Value.1", "10.0.0.2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (wanted, mut others) = split_private_ip_filter(&params);
        others.sort();
        assert_eq!(wanted, Some(vec!["10.0.0.2".to_string()]));
        assert_eq!(
            others,
            vec![
                (
                    "Filter.1.Name".to_string(),
                    "network-interface-id".to_string()
                ),
                ("Filter.1.Value.1".to_string(), "eni-1".to_string())
            ]
        );
    }

    #[test]
    fn a_list_is_replaced_whether_it_was_empty_or_not() {
        assert_eq!(
            replace_set(
                "<r><addressesSet/></r>",
                "addressesSet",
                &["<a>1</a>".into()]
            ),
            "<r><addressesSet><item><a>1</a></item></addressesSet></r>"
        );
        assert_eq!(
            replace_set(
                "<r><addressesSet><item>x</item></addressesSet><q/></r>",
                "addressesSet",
                &[]
            ),
            "<r><addressesSet></addressesSet><q/></r>"
        );
    }
}
