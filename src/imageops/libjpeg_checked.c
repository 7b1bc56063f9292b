/* The C half of src/imageops/libjpeg.rs: libjpeg-turbo's decoder with an error manager of our own.
 *
 * libjpeg calls corrupt or missing entropy data a *warning*: it fills the rest with grey, prints
 * "Corrupt JPEG data: ..." on stderr and carries on. OpenCV's imdecode gives no way to hear of it.
 * Here every warning is counted and its first text kept, nothing is printed, and a fatal error
 * returns (setjmp/longjmp stay inside this file: no Rust frame lies between them).
 *
 * The output matches OpenCV 4.6's imdecode(IMREAD_COLOR[_REDUCED_n]) byte for byte: the same
 * library and defaults (ISLOW IDCT, fancy upsampling), 3-component and grey frames converted by
 * libjpeg, 4-component (CMYK) frames by OpenCV's own formula. */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

struct checked_error {
    struct jpeg_error_mgr pub;
    jmp_buf escape;
    unsigned long warnings;
    char first_warning[JMSG_LENGTH_MAX];
    char error[JMSG_LENGTH_MAX];
};

static void on_error(j_common_ptr cinfo) {
    struct checked_error *err = (struct checked_error *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->error);
    longjmp(err->escape, 1);
}

/* Level -1 is a warning (corrupt data); levels 0 and up are trace messages, dropped. */
static void on_message(j_common_ptr cinfo, int level) {
    struct checked_error *err = (struct checked_error *)cinfo->err;
    if (level < 0) {
        if (err->warnings == 0) {
            (*cinfo->err->format_message)(cinfo, err->first_warning);
        }
        err->warnings++;
    }
}

static void no_output(j_common_ptr cinfo) { (void)cinfo; }

static void copy_message(char *to, size_t to_len, const char *from) {
    if (to_len == 0) return;
    strncpy(to, from, to_len - 1);
    to[to_len - 1] = '\0';
}

/* Decodes `data` at 1/`scale_denom` (1, 2, 4 or 8) into `out` as interleaved RGB, at most
 * `out_capacity` bytes. Returns 0 when whole, 1 when libjpeg warned (`warnings` of them, the first
 * in `message`: the pixels hold its grey fill), 2 on a fatal error (`message` says why). */
int dcgan_jpeg_decode(const unsigned char *data, unsigned long size, int scale_denom, unsigned char *out,
                      unsigned long out_capacity, unsigned *width, unsigned *height, unsigned long *warnings,
                      char *message, unsigned long message_len) {
    struct jpeg_decompress_struct cinfo;
    struct checked_error err;
    unsigned char *volatile cmyk_row = NULL;
    memset(&err, 0, sizeof err);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = on_error;
    err.pub.emit_message = on_message;
    err.pub.output_message = no_output;
    *width = 0;
    *height = 0;
    *warnings = 0;
    if (setjmp(err.escape)) {
        jpeg_destroy_decompress(&cinfo);
        free(cmyk_row);
        copy_message(message, message_len, err.error);
        *warnings = err.warnings;
        return 2;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, size);
    jpeg_read_header(&cinfo, TRUE);
    cinfo.scale_num = 1;
    cinfo.scale_denom = (unsigned)scale_denom;
    int cmyk = cinfo.num_components == 4;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_calc_output_dimensions(&cinfo);
    unsigned long w = cinfo.output_width, h = cinfo.output_height;
    if (w == 0 || h == 0 || w * h * 3 > out_capacity) {
        snprintf(err.error, sizeof err.error, "decodes to %lux%lu pixels, not the frame size its header gave", w,
                 h);
        jpeg_destroy_decompress(&cinfo);
        copy_message(message, message_len, err.error);
        return 2;
    }
    jpeg_start_decompress(&cinfo);
    if (cmyk) {
        cmyk_row = malloc(w * 4);
        if (!cmyk_row) {
            snprintf(err.error, sizeof err.error, "out of memory");
            longjmp(err.escape, 1);
        }
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        unsigned char *row = out + (unsigned long)cinfo.output_scanline * w * 3;
        JSAMPROW target = cmyk ? cmyk_row : row;
        jpeg_read_scanlines(&cinfo, &target, 1);
        if (cmyk) {
            /* OpenCV's icvCvt_CMYK2BGR_8u_C4C3R, written to RGB. */
            for (unsigned long x = 0; x < w; x++) {
                int c = cmyk_row[4 * x], m = cmyk_row[4 * x + 1], y = cmyk_row[4 * x + 2], k = cmyk_row[4 * x + 3];
                row[3 * x] = (unsigned char)(k - ((255 - c) * k >> 8));
                row[3 * x + 1] = (unsigned char)(k - ((255 - m) * k >> 8));
                row[3 * x + 2] = (unsigned char)(k - ((255 - y) * k >> 8));
            }
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(cmyk_row);
    *width = (unsigned)w;
    *height = (unsigned)h;
    *warnings = err.warnings;
    if (err.warnings > 0) {
        copy_message(message, message_len, err.first_warning);
        return 1;
    }
    return 0;
}
