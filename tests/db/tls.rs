//! TLS towards the real PostgreSQL (Debian's snakeoil certificate): `require`
//! encrypts, `verify-full` checks chain and name, and `require` never falls back to plain.

use super::*;

#[tokio::test]
async fn pg_require_encrypts_and_verify_full_checks_the_certificate() {
    let mut fx = Fixture::new(Engine::Postgres, "pg-tls");
    let user = fx.user("tls");
    let password = secret("tls-Pa55word");
    let server = fx.server(SslMode::Require);
    create_user(&server, &user, &password).await;
    assert!(
        db::observe(&server, &user, None, &password)
            .await
            .unwrap()
            .password_works
    );

    // verify-full against the server's own (self-signed, CN=localhost) certificate.
    let snakeoil = std::fs::read(SNAKEOIL).unwrap_or_else(|e| panic!("{SNAKEOIL}: {e}"));
    let verified = Server {
        host: "localhost".into(),
        ssl_mode: SslMode::VerifyFull,
        ca_pem: Some(snakeoil.clone()),
        ..fx.server(SslMode::VerifyFull)
    };
    assert!(
        db::observe(&verified, &user, None, &password)
            .await
            .unwrap()
            .password_works
    );

    // The same certificate does not vouch for another name.
    let wrong_name = Server {
        host: "127.0.0.1".into(),
        ..verified.clone()
    };
    let err = db::observe(&wrong_name, &user, None, &password)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DbError::Connect { .. }) && err.is_transient(),
        "{err}"
    );

    // Without a CA, verify-full uses the Mozilla roots, which do not hold the snakeoil.
    let no_ca = Server {
        ca_pem: None,
        ..verified.clone()
    };
    let err = db::observe(&no_ca, &user, None, &password)
        .await
        .unwrap_err();
    assert!(matches!(err, DbError::Connect { .. }), "{err}");

    let garbage = Server {
        ca_pem: Some(b"not a certificate".to_vec()),
        ..verified
    };
    let err = db::observe(&garbage, &user, None, &password)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "tls_config", "{err}");
}

/// A server that answers PostgreSQL's SSLRequest with "no TLS" and reports how many
/// bytes the client sent after that answer (a startup message means it went on in plain).
fn plain_only_postgres() -> (u16, std::sync::mpsc::Receiver<usize>) {
    use std::io::Read as _;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 8];
        stream.read_exact(&mut request).unwrap();
        assert_eq!(
            request,
            [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f],
            "an SSLRequest"
        );
        stream.write_all(b"N").unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut rest = [0u8; 512];
        let _ = tx.send(stream.read(&mut rest).unwrap_or(0));
    });
    (port, rx)
}

#[tokio::test]
async fn pg_require_never_falls_back_to_plain_and_prefer_does() {
    let fx = Fixture::new(Engine::Postgres, "pg-plain");
    let (port, sent) = plain_only_postgres();
    let require = Server {
        port,
        ..fx.server(SslMode::Require)
    };
    let err = db::observe(&require, "nobody", None, &secret("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DbError::Connect { .. }) && err.is_transient(),
        "{err}"
    );
    assert_eq!(
        sent.recv().unwrap(),
        0,
        "require sent a startup message in plain"
    );

    let (port, sent) = plain_only_postgres();
    let prefer = Server {
        port,
        ..fx.server(SslMode::Prefer)
    };
    let _ = db::observe(&prefer, "nobody", None, &secret("x"))
        .await
        .unwrap_err();
    assert!(sent.recv().unwrap() > 0, "prefer went on in plain");
}
