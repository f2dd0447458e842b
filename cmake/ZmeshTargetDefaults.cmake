# zmesh_target_defaults(<target>): standard, warnings and sanitizers, per target.
# Never global flags: a parent project that embeds zmesh must not inherit them.
function(zmesh_target_defaults tgt)
    target_compile_features(${tgt} PUBLIC cxx_std_20)
    set_target_properties(${tgt} PROPERTIES CXX_EXTENSIONS OFF)
    target_compile_options(${tgt} PRIVATE
        -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wnon-virtual-dtor
        -Wold-style-cast -Woverloaded-virtual -Wimplicit-fallthrough)
    if(ZMESH_WERROR)
        target_compile_options(${tgt} PRIVATE -Werror)
    endif()
    if(ZMESH_SANITIZE AND NOT ZMESH_SANITIZE STREQUAL "none")
        target_compile_options(${tgt} PRIVATE -fsanitize=${ZMESH_SANITIZE} -fno-omit-frame-pointer
                                              -fno-sanitize-recover=undefined)
        target_link_options(${tgt} PRIVATE -fsanitize=${ZMESH_SANITIZE})
    endif()
endfunction()
