// Sign a request for the Remote.It API in nginx (njs), as the vendor's authentication page
// describes: draft-cavage HTTP Signatures, hmac-sha256, keyed by the base64-decoded secret,
// over "(request-target) host date content-type". Used by njs.conf.
const crypto = require('crypto');

// Top-level code runs once, when nginx loads the configuration: decode the secret only once.
const KEY_ID = process.env.R3_ACCESS_KEY_ID;
const SECRET = Buffer.from(process.env.R3_SECRET_ACCESS_KEY, 'base64');
const SIGNED_HEADERS = '(request-target) host date content-type';

// The Date header: an IMF-fixdate such as "Mon, 30 Nov 2026 07:19:24 GMT".
function date(r) {
    return new Date().toUTCString();
}

// The Authorization header; $remoteit_date is cached per request, so it matches Date.
function authorization(r) {
    const text = [
        '(request-target): ' + r.method.toLowerCase() + ' ' + r.variables.request_uri,
        'host: ' + r.variables.remoteit_host,
        'date: ' + r.variables.remoteit_date,
        'content-type: ' + r.variables.remoteit_content_type,
    ].join('\n');
    const signature = crypto.createHmac('sha256', SECRET).update(text).digest('base64');
    return 'Signature keyId="' + KEY_ID + '",algorithm="hmac-sha256",headers="'
        + SIGNED_HEADERS + '",signature="' + signature + '"';
}

export default { date, authorization };
