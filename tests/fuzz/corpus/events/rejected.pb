
inboundtls_handshake198.51.100.4:40000"as2.example.com*st1P¥bJ
TLS_CLIENT_CERT_UNTRUSTEDnot trustedverify: issuer unknown"registerj}
 CN=as2.partner.example,O=PartnerCN=Partner CAa1b2c"ab*2024-01-01T00:00:00Z22026-01-01T00:00:00Z:TLS1.3BAES-256-GCMrTLS1.3zcertificate_required‚bad_certificate‚
unknown_caŠ2024-05-01T00:00:00.000Z