// The `norm` kernel's source: the conversion reads the chain's last output (norm.wgsl).

// Element i of row `col` of the chain's last output, for the activation conversion.
fn aq_ld(col: u32, i: u32) -> f32 {
    let i1 = col % p.ne1;
    let i2 = (col / p.ne1) % p.ne2;
    let i3 = col / (p.ne1 * p.ne2);
    if (p.chain == 2u) {
        return bitcast<f32>(o[(p.o_base + i * p.o_nb0 + i1 * p.o_nb1 + i2 * p.o_nb2 + i3 * p.o_nb3) >> 2u]);
    }
    return bitcast<f32>(m[(p.m_base + i * p.m_nb0 + i1 * p.m_nb1 + i2 * p.m_nb2 + i3 * p.m_nb3) >> 2u]);
}
