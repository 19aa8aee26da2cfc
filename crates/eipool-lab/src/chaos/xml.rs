//! EC2's query protocol as the proxy needs it: forms to send, fields to read out of XML
//! answers, and answers of its own in EC2's shapes.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use rand::Rng;

/// An EC2 query form: `Action`, the API version moto speaks, then `params`.
pub(super) fn query_form(action: &str, params: &[(&str, &str)]) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("Action", action)
        .append_pair("Version", "2016-11-15");
    for (k, v) in params {
        form.append_pair(k, v);
    }
    form.finish()
}

/// An answer in EC2's XML error shape.
pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>chaos-{}</RequestID></Response>",
        rand::rng().random::<u32>()
    );
    answer(status, Bytes::from(body))
}

/// An XML answer with `status`.
pub(super) fn answer(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/xml")
        .body(Full::new(body))
        .unwrap()
}

/// The text of the first `<tag>…</tag>` in `xml`.
pub(super) fn field<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

/// The top-level `<item>`s of the list `<set>` in an EC2 XML answer (items nest: an interface's
/// groups and private IPs are items too).
pub(super) fn items<'a>(xml: &'a str, set: &str) -> Vec<&'a str> {
    let Some(body) = field(xml, set) else {
        return Vec::new();
    };
    let mut items = Vec::new();
    let (mut depth, mut start, mut at) = (0usize, 0usize, 0usize);
    while let Some(i) = body[at..].find("<item>").map(|i| i + at) {
        let close = body[at..].find("</item>").map(|c| c + at);
        match close {
            Some(c) if c < i => {
                depth -= 1;
                if depth == 0 {
                    items.push(&body[start..c]);
                }
                at = c + "</item>".len();
            }
            _ => {
                if depth == 0 {
                    start = i + "<item>".len();
                }
                depth += 1;
                at = i + "<item>".len();
            }
        }
    }
    while let Some(c) = body[at..].find("</item>").map(|c| c + at) {
        depth = depth.saturating_sub(1);
        if depth == 0 {
            items.push(&body[start..c]);
        }
        at = c + "</item>".len();
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_from_ec2_xml() {
        let x = "<DescribeAddressesResponse><addressesSet><item><allocationId>eipalloc-1</allocationId></item></addressesSet></DescribeAddressesResponse>";
        assert_eq!(field(x, "allocationId"), Some("eipalloc-1"));
        assert_eq!(field(x, "associationId"), None);
    }

    #[test]
    fn items_of_an_ec2_list_are_read_one_by_one() {
        let x = "<addressesSet><item><allocationId>eipalloc-1</allocationId><associationId>eipassoc-1</associationId></item><item><allocationId>eipalloc-2</allocationId></item></addressesSet>";
        let read: Vec<(Option<&str>, Option<&str>)> = items(x, "addressesSet")
            .into_iter()
            .map(|i| (field(i, "allocationId"), field(i, "associationId")))
            .collect();
        assert_eq!(
            read,
            vec![
                (Some("eipalloc-1"), Some("eipassoc-1")),
                (Some("eipalloc-2"), None)
            ]
        );
        let nested = "<networkInterfaceSet><item><attachment><deviceIndex>0</deviceIndex></attachment><groupSet><item><groupId>sg-1</groupId></item></groupSet><networkInterfaceId>eni-1</networkInterfaceId></item><item><networkInterfaceId>eni-2</networkInterfaceId></item></networkInterfaceSet>";
        let read = items(nested, "networkInterfaceSet");
        assert_eq!(read.len(), 2, "{read:?}");
        assert_eq!(field(read[0], "deviceIndex"), Some("0"));
        assert!(read[0].ends_with("<networkInterfaceId>eni-1</networkInterfaceId>"));
        assert_eq!(field(read[1], "networkInterfaceId"), Some("eni-2"));
    }

    #[test]
    fn a_query_form_names_its_action_and_version_first() {
        assert_eq!(
            query_form("DescribeAddresses", &[("AllocationId.1", "eipalloc-1")]),
            "Action=DescribeAddresses&Version=2016-11-15&AllocationId.1=eipalloc-1"
        );
    }
}
