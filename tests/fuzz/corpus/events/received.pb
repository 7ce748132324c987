
$0b0e8c4e-8f3f-4e59-a2b5-7e1c3c5d9f01abc@partnerPARTNER"	MYCOMPANY*st12p1:as2B“
'file:///var/lib/mft/payloads/0b0e8c4e/0€ä—Ð@9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"invoice.edi*application/EDIFACTB7
'file:///var/lib/mft/payloads/0b0e8c4e/1*
text/plainJ,n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=Rsha-256Xbsha-256hraes-256-cbcx‚zlibŠsync’2automatic-action/MDN-sent-automatically; processed˜¢}
 CN=as2.partner.example,O=PartnerCN=Partner CAa1b2c"ab*2024-01-01T00:00:00Z22026-01-01T00:00:00Z:TLS1.3BAES-256-GCMª192.0.2.7:51234²2024-05-01T12:34:56.789Z