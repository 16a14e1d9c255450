# Every conformance vector (tests/conformance): valid ones decode to expected.npz and names.json
# through every read, invalid ones are R errors of the class the Python reader raises.

test_that("every valid vector decodes to its expected matrix and names", {
  for (name in names(vectors("valid"))) {
    dir <- vectors("valid")[[name]]
    exp <- read_expected(dir)
    path <- file.path(dir, "matrix.sinr")
    m <- read_sinr(path, threads = 2L)
    expect_s4_class(m, "dgCMatrix")
    expect_equal(as.numeric(dim(m)), exp$shape, info = name)
    got <- coo(m)
    expect_identical(got$genes, exp$genes, info = name)
    expect_identical(got$cells, exp$cells, info = name)
    expect_identical(got$values, exp$values, info = name)
    expect_identical(coo(read_sinr(path, threads = 1L)), got, info = name)
    f <- sinr_open(path)
    want <- jsonlite::fromJSON(file.path(dir, "names.json"), simplifyVector = FALSE)
    for (which in c("gene_ids", "gene_names", "feature_types", "cell_names")) {
      stored <- want[[which]]
      expect_identical(scinrcodec:::.names(f, which), if (is.null(stored)) NULL else unlist(stored) %||% character(),
                       info = paste(name, which))
    }
    if (prod(dim(m)) == 0) next
    set.seed(1)
    genes <- unique(c(exp$genes[1L], sample.int(nrow(m), min(nrow(m), 5L)), nrow(m)))
    cells <- unique(c(exp$cells[1L], sample.int(ncol(m), min(ncol(m), 5L)), ncol(m)))
    genes <- genes[!is.na(genes)]
    cells <- cells[!is.na(cells)]
    # Matrix cannot subset rows of a matrix of 2^31 - 1 genes (huge_gene_count): blocks are checked
    # against the expected nonzeros instead
    expect_identical(unname(as.matrix(f[genes, ])), expected_block(exp, genes, seq_len(ncol(m))), info = name)
    expect_identical(unname(as.matrix(f[genes, cells])), expected_block(exp, genes, cells), info = name)
    if (nrow(m) < 2^20) expect_identical(f[, cells], m[, cells, drop = FALSE], info = name)
    for (k in seq_len(min(length(exp$values), 10L)))
      expect_identical(sinr_entry(f, exp$genes[[k]], exp$cells[[k]]), exp$values[[k]], info = name)
    expect_identical(sinr_entry(f, genes[[1L]], cells[[1L]]), expected_block(exp, genes[[1L]], cells[[1L]])[1L, 1L],
                     info = name)
  }
})

read_everything <- function(path) {
  m <- read_sinr(path, threads = 2L)
  f <- sinr_open(path)
  for (which in c("gene_ids", "gene_names", "feature_types", "cell_names")) scinrcodec:::.names(f, which)
  m
}

test_that("every invalid vector is an R error of the Python reader's class and message", {
  for (name in names(vectors("invalid"))) {
    dir <- vectors("invalid")[[name]]
    want <- jsonlite::fromJSON(file.path(dir, "expected_error.json"))
    err <- tryCatch(read_everything(file.path(dir, "matrix.sinr")), error = function(e) e)
    expect_s3_class(err, "sinr_error")
    expect_identical(class(err)[[1L]], scinrcodec:::.error_class(want$error)[[1L]], info = name)
    expect_true(grepl(want$message_contains, conditionMessage(err), fixed = TRUE),
                info = paste(name, conditionMessage(err)))
  }
})
