//! Unit tests of the codec: every type both ways, faults, escaping and bad input.

use chrono::NaiveDateTime;

use super::*;

fn limits() -> Limits {
    Limits::default()
}

fn response(value_xml: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><methodResponse><params><param><value>{value_xml}</value></param></params></methodResponse>"
    )
}

fn decode_value(value_xml: &str) -> Result<Value, DecodeError> {
    match decode_response(response(value_xml).as_bytes(), &limits())? {
        MethodResponse::Success(v) => Ok(v),
        MethodResponse::Fault(f) => panic!("unexpected fault {f}"),
    }
}

fn kind(r: Result<impl std::fmt::Debug, DecodeError>) -> DecodeErrorKind {
    r.expect_err("decoding should fail").kind
}

fn dt(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
}

#[test]
fn decodes_every_scalar_type() {
    assert_eq!(decode_value("<i4>-42</i4>").unwrap(), Value::Int(-42));
    assert_eq!(decode_value("<int> 7 </int>").unwrap(), Value::Int(7));
    assert_eq!(
        decode_value("<i8>9000000000</i8>").unwrap(),
        Value::Int(9_000_000_000)
    );
    assert_eq!(
        decode_value("<boolean>1</boolean>").unwrap(),
        Value::Bool(true)
    );
    assert_eq!(
        decode_value("<boolean>0</boolean>").unwrap(),
        Value::Bool(false)
    );
    assert_eq!(
        decode_value("<double>-1.5</double>").unwrap(),
        Value::Double(-1.5)
    );
    assert_eq!(
        decode_value("<string>hello</string>").unwrap(),
        Value::String("hello".into())
    );
    assert_eq!(
        decode_value("<dateTime.iso8601>20260312T17:07:41</dateTime.iso8601>").unwrap(),
        Value::DateTime(dt("2026-03-12 17:07:41"))
    );
    assert_eq!(
        decode_value("<base64>aGVs\nbG8=</base64>").unwrap(),
        Value::Base64(b"hello".to_vec())
    );
    assert_eq!(decode_value("<nil/>").unwrap(), Value::Nil);
    assert_eq!(decode_value("<ex:nil/>").unwrap(), Value::Nil);
}

#[test]
fn untyped_value_is_a_string_with_whitespace_kept() {
    assert_eq!(
        decode_value("  two  spaces\n").unwrap(),
        Value::String("  two  spaces\n".into())
    );
    assert_eq!(decode_value("").unwrap(), Value::String(String::new()));
    assert_eq!(
        decode_value("<string>\n  indented\t</string>").unwrap(),
        Value::String("\n  indented\t".into())
    );
    assert_eq!(
        decode_value("<string></string>").unwrap(),
        Value::String(String::new())
    );
    // Pretty-printed typed value: whitespace around the type tag is layout.
    assert_eq!(decode_value("\n   <i4>5</i4>\n ").unwrap(), Value::Int(5));
}

#[test]
fn entities_and_char_refs_are_resolved_and_spaces_around_them_kept() {
    assert_eq!(
        decode_value("<string>a &amp; b &lt;c&gt; &quot;&apos; &#233;&#x263A;</string>").unwrap(),
        Value::String("a & b <c> \"' é☺".into())
    );
    assert_eq!(
        decode_value("<string><![CDATA[<raw> & text]]></string>").unwrap(),
        Value::String("<raw> & text".into())
    );
}

#[test]
fn unknown_entity_and_doctype_are_refused() {
    assert_eq!(
        kind(decode_value("<string>&ouml;</string>")),
        DecodeErrorKind::UnknownEntity("ouml".into())
    );
    let xxe = "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>\
               <methodResponse><params><param><value>&x;</value></param></params></methodResponse>";
    assert!(matches!(
        kind(decode_response(xxe.as_bytes(), &limits())),
        DecodeErrorKind::NotXmlRpc(_)
    ));
    assert!(matches!(
        kind(decode_value("<string>&#0;</string>")),
        DecodeErrorKind::Xml(_)
    ));
}

#[test]
fn structs_and_arrays_nest_and_member_order_is_free() {
    let v = decode_value(
        "<struct>\n <member><value><i4>1</i4></value><name>x</name></member></struct>",
    );
    assert!(v.is_err(), "name must come before value");
    let v = decode_value(
        "<struct><member><name>b</name><value><array><data>\
           <value><i4>1</i4></value><value>two</value><value><struct></struct></value>\
         </data></array></value></member>\
         <member><name>a</name><value><boolean>1</boolean></value></member></struct>",
    )
    .unwrap();
    let s = v.as_struct().unwrap();
    assert!(s.bool_field("a").unwrap());
    let arr = s.array_field("b").unwrap();
    assert_eq!(arr.len(), 3);
    assert_eq!(arr[1].as_str(), Some("two"));
    assert_eq!(arr[2], Value::Struct(Struct::new()));
    assert_eq!(
        decode_value("<array><data></data></array>").unwrap(),
        Value::Array(vec![])
    );
}

#[test]
fn every_type_round_trips_through_encode_and_decode() {
    let v = Value::Struct(
        Struct::new()
            .with("int", 2_147_483_647)
            .with("neg", -5)
            .with("big", Value::Int(-9_000_000_000))
            .with("yes", true)
            .with("no", false)
            .with("pi", 3.25)
            .with("tiny", 1e-30)
            .with("text", "  a < b & c > d\r\n\ttab ")
            .with("unicode", "Grüße ☺ 𝄞")
            .with("empty", "")
            .with("when", dt("2026-01-02 03:04:05"))
            .with("blob", Value::Base64(vec![0, 1, 2, 255]))
            .with("list", vec![Value::Int(1), Value::from("x"), Value::Nil])
            .with("nested", Struct::new().with("k", Vec::<Value>::new())),
    );
    let xml = encode_success(&v).unwrap();
    assert!(xml.contains("<i4>2147483647</i4>"));
    assert!(xml.contains("<i8>-9000000000</i8>"));
    assert!(xml.contains("a &lt; b &amp; c &gt; d"));
    assert!(xml.contains("<dateTime.iso8601>20260102T03:04:05</dateTime.iso8601>"));
    let back = decode_response(xml.as_bytes(), &limits()).unwrap();
    assert_eq!(back, MethodResponse::Success(v));
}

#[test]
fn method_call_round_trips() {
    let call = MethodCall {
        name: "system.scheduleScriptRun".into(),
        params: vec![
            Value::from("1x".to_string() + &"a".repeat(64)),
            Value::Int(1_000_010_000),
            Value::from("#!/bin/sh\necho 'it''s' && true\n"),
            Value::DateTime(dt("2026-03-12 17:07:41")),
        ],
    };
    let xml = encode_call(&call).unwrap();
    assert_eq!(decode_call(xml.as_bytes(), &limits()).unwrap(), call);
    // No params element at all is a valid call.
    let bare = "<methodCall><methodName>api.getVersion</methodName></methodCall>";
    let c = decode_call(bare.as_bytes(), &limits()).unwrap();
    assert_eq!(c.name, "api.getVersion");
    assert!(c.params.is_empty());
    assert!(encode_call_parts("bad name<", &[]).is_err());
    let bad = "<methodCall><methodName>a b</methodName></methodCall>";
    assert!(matches!(
        kind(decode_call(bad.as_bytes(), &limits())),
        DecodeErrorKind::BadValue { .. }
    ));
}

#[test]
fn faults_round_trip_and_are_validated() {
    let f = Fault {
        code: -208,
        string: "redstone.xmlrpc.XmlRpcFault: No such system - sid = 1 <&>".into(),
    };
    let xml = encode_fault(&f).unwrap();
    assert_eq!(
        decode_response(xml.as_bytes(), &limits()).unwrap(),
        MethodResponse::Fault(f)
    );
    // Python writes the members in this order with <int>; we accept any order.
    let py = "<?xml version='1.0'?>\n<methodResponse>\n<fault>\n<value><struct>\n\
              <member>\n<name>faultString</name>\n<value><string>boom</string></value>\n</member>\n\
              <member>\n<name>faultCode</name>\n<value><int>2950</int></value>\n</member>\n\
              </struct></value>\n</fault>\n</methodResponse>\n";
    assert_eq!(
        decode_response(py.as_bytes(), &limits()).unwrap(),
        MethodResponse::Fault(Fault {
            code: 2950,
            string: "boom".into()
        })
    );
    let no_code = "<methodResponse><fault><value><struct><member><name>faultString</name>\
                   <value>x</value></member></struct></value></fault></methodResponse>";
    assert!(matches!(
        kind(decode_response(no_code.as_bytes(), &limits())),
        DecodeErrorKind::Unexpected { .. }
    ));
}

#[test]
fn deep_nesting_is_rejected() {
    let lim = Limits {
        max_depth: 10,
        ..Limits::default()
    };
    let nest = |n: usize| {
        let mut s = String::new();
        for _ in 0..n {
            s.push_str("<array><data><value>");
        }
        s.push_str("<i4>1</i4>");
        for _ in 0..n {
            s.push_str("</value></data></array>");
        }
        response(&s)
    };
    assert!(decode_response(nest(10).as_bytes(), &lim).is_ok());
    assert_eq!(
        kind(decode_response(nest(11).as_bytes(), &lim)),
        DecodeErrorKind::TooDeep { limit: 10 }
    );
    // A hostile depth far past the default limit fails quickly, without stack overflow.
    assert_eq!(
        kind(decode_response(nest(100_000).as_bytes(), &limits())),
        DecodeErrorKind::TooDeep { limit: 64 }
    );
}

#[test]
fn oversized_body_is_rejected_before_parsing() {
    let lim = Limits {
        max_body_bytes: 100,
        ..Limits::default()
    };
    let body = response(&format!("<string>{}</string>", "x".repeat(200)));
    assert!(matches!(
        kind(decode_response(body.as_bytes(), &lim)),
        DecodeErrorKind::TooLarge { limit: 100, .. }
    ));
}

#[test]
fn truncated_xml_is_rejected() {
    let full =
        response("<struct><member><name>a</name><value><i4>1</i4></value></member></struct>");
    for cut in [10, 40, 80, full.len() - 20, full.len() - 1] {
        let err = decode_response(&full.as_bytes()[..cut], &limits()).unwrap_err();
        assert!(
            matches!(
                err.kind,
                DecodeErrorKind::Truncated | DecodeErrorKind::Xml(_)
            ),
            "cut at {cut}: {err}"
        );
    }
    let err = decode_response(&full.as_bytes()[..full.len() - 20], &limits()).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::Truncated, "{err}");
}

#[test]
fn html_page_is_rejected_with_an_excerpt() {
    let html = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";
    let err = decode_response(html.as_bytes(), &limits()).unwrap_err();
    assert!(err.to_string().contains("HTML page"), "{err}");
    let html = "<html><head><title>502 Bad Gateway</title></head></html>";
    let err = decode_response(html.as_bytes(), &limits()).unwrap_err();
    assert!(matches!(err.kind, DecodeErrorKind::NotXmlRpc(_)), "{err}");
    assert!(err.excerpt.contains("Bad Gateway"), "{}", err.excerpt);
    let err = decode_response(b"", &limits()).unwrap_err();
    assert!(matches!(err.kind, DecodeErrorKind::NotXmlRpc(_)), "{err}");
    let err = decode_response(b"Internal Server Error", &limits()).unwrap_err();
    assert!(
        matches!(err.kind, DecodeErrorKind::Unexpected { .. }),
        "{err}"
    );
}

#[test]
fn strict_structure() {
    let cases = [
        // two params in a response
        "<methodResponse><params><param><value>a</value></param><param><value>b</value></param></params></methodResponse>",
        // no param
        "<methodResponse><params></params></methodResponse>",
        // unknown type
        "<methodResponse><params><param><value><float>1</float></value></param></params></methodResponse>",
        // text mixed with a typed value
        "<methodResponse><params><param><value>x<i4>1</i4></value></param></params></methodResponse>",
        // trailing element
        "<methodResponse><params><param><value>a</value></param></params></methodResponse><x/>",
        // mismatched end tag
        "<methodResponse><params><param><value>a</valu></param></params></methodResponse>",
        // array without data
        "<methodResponse><params><param><value><array><value>1</value></array></value></param></params></methodResponse>",
        // wrong root
        "<methodCall><methodName>x</methodName></methodCall>",
    ];
    for c in cases {
        assert!(decode_response(c.as_bytes(), &limits()).is_err(), "{c}");
    }
}

#[test]
fn bad_scalar_text_is_a_typed_error() {
    for (xml, ty) in [
        ("<i4>12a</i4>", "i4"),
        ("<int></int>", "int"),
        ("<boolean>true</boolean>", "boolean"),
        ("<double>nan</double>", "double"),
        ("<double>inf</double>", "double"),
        (
            "<dateTime.iso8601>yesterday</dateTime.iso8601>",
            "dateTime.iso8601",
        ),
        ("<base64>!!!</base64>", "base64"),
    ] {
        match kind(decode_value(xml)) {
            DecodeErrorKind::BadValue { ty: t, .. } => assert_eq!(t, ty, "{xml}"),
            other => panic!("{xml}: {other:?}"),
        }
    }
}

#[test]
fn encode_refuses_what_xml_cannot_carry() {
    let err = encode_success(&Value::from("secret\u{7}")).unwrap_err();
    assert_eq!(err, EncodeError::InvalidChar { code: 7, index: 6 });
    assert!(!err.to_string().contains("secret"), "{err}");
    assert!(matches!(
        encode_success(&Value::Double(f64::NAN)),
        Err(EncodeError::NonFiniteDouble(_))
    ));
    // A fault is always sendable.
    let xml = encode_fault(&Fault {
        code: 1,
        string: "bad\u{1}".into(),
    })
    .unwrap();
    assert!(decode_response(xml.as_bytes(), &limits()).is_ok());
}

#[test]
fn errors_carry_position_and_excerpt() {
    let body = response("<i4>oops</i4>");
    let err = decode_response(body.as_bytes(), &limits()).unwrap_err();
    assert!(
        err.to_string().contains("invalid <i4> value \"oops\""),
        "{err}"
    );
    assert!(err.excerpt.contains("oops"), "{}", err.excerpt);
}
