// The API's errors. Every error response has one shape:
//   { "error": { "code": "validation_failed", "message": "...", "fields": { "subject": "..." } } }

export class HttpError extends Error {
  constructor(status, code, message, fields = undefined) {
    super(message);
    this.status = status;
    this.code = code;
    this.fields = fields;
  }

  toJSON() {
    return {
      error: { code: this.code, message: this.message, ...(this.fields ? { fields: this.fields } : {}) },
    };
  }
}

export const validationFailed = (fields) =>
  new HttpError(422, "validation_failed", "Some fields are not valid.", fields);
export const badRequest = (message) => new HttpError(400, "bad_request", message);
export const notFound = (message = "Not found.") => new HttpError(404, "not_found", message);
